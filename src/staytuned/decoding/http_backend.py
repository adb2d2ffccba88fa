"""Generation through any OpenAI-compatible server (vLLM, llama.cpp server, TGI, staytuned serve).

One request per prompt, at most ``concurrency`` in flight; connection failures, timeouts, 429 and
5xx answers are retried with exponential backoff (``Retry-After`` honoured), other 4xx answers
fail at once with the server's own message. Every error names the URL.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from staytuned.decoding.base import Generation
from staytuned.decoding.stopping import truncate_at_stop
from staytuned.errors import InputError, StaytunedError
from staytuned.hparams.decode import BACKENDS, DecodingConfig

FLAVORS = tuple(b for b in BACKENDS if b != "hf")


class BackendError(StaytunedError):
    """A generation server could not be reached or answered with an error."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        self.url, self.status, self.message = url, status, message
        super().__init__(f"{url}: {message}")


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` extra attempts; waits ``backoff * 2**attempt`` (jittered, capped)."""

    max_retries: int = 2
    backoff: float = 0.5
    max_backoff: float = 8.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        base = min(self.backoff * (2 ** attempt), self.max_backoff)
        return base * (0.5 + random.random() / 2)  # jitter: retries of parallel requests spread out


class HTTPBackend:
    """Client of an OpenAI-compatible ``base_url`` (e.g. ``http://127.0.0.1:8000/v1``).

    ``flavor`` says how the server spells the non-OpenAI sampling fields (see
    :meth:`DecodingConfig.for_backend`); ``chat=True`` sends each prompt as one user message to
    ``/chat/completions`` instead of ``/completions``. ``model=None`` asks ``/models`` once.
    """

    name = "http"

    def __init__(self, base_url: str, *, model: str | None = None, api_key: str | None = None,
                 flavor: str = "vllm", chat: bool = False, timeout: float = 60.0,
                 connect_timeout: float = 5.0, retry: RetryPolicy | None = None,
                 concurrency: int = 4, transport: Any = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InputError("not an http(s) URL", field="base_url", value=base_url,
                             expected="e.g. http://127.0.0.1:8000/v1")
        if flavor not in FLAVORS:
            raise InputError("unknown server flavor", field="flavor", value=flavor,
                             expected="one of " + ", ".join(FLAVORS))
        for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
            if not value > 0:
                raise InputError("must be positive", field=name, value=value, expected="seconds > 0")
        if concurrency < 1:
            raise InputError("must be at least 1", field="concurrency", value=concurrency,
                             expected="an integer >= 1")
        self.base_url = base_url.rstrip("/")
        self.api_key, self.flavor, self.chat = api_key, flavor, chat
        self.timeout, self.connect_timeout = float(timeout), float(connect_timeout)
        self.retry = retry or RetryPolicy()
        self.concurrency = int(concurrency)
        self._transport = transport
        self._model = model
        self._model_lock = threading.Lock()

    # -- public API ------------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        if self._model is None:
            with self._model_lock:
                if self._model is None:
                    models = self.list_models()
                    if not models:
                        raise BackendError("the server lists no models", url=self._url("/models"))
                    self._model = models[0]
        return self._model

    def list_models(self) -> list[str]:
        body = _run_sync(self._list_models())
        return [m["id"] for m in body.get("data", []) if isinstance(m, dict) and "id" in m]

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        # The server renders chat templates itself; plain-text fallback for completion endpoints.
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"

    def generate(self, prompts: Sequence[str], config: DecodingConfig, *, raw: bool = False,
                 on_batch: Callable[[int], None] | None = None) -> list[Generation]:
        """One generation per prompt, in order (``raw`` is accepted for interface parity: a
        server always receives the text as given)."""
        params = config.for_backend(self.flavor)  # refuses unsupported fields before any request
        model = self.model_name
        return _run_sync(self._generate_all(list(prompts), config, params, model, on_batch))

    # -- internals -------------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        return self.base_url + path

    def _client(self) -> Any:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        timeout = httpx.Timeout(self.timeout, connect=self.connect_timeout)
        return httpx.AsyncClient(timeout=timeout, headers=headers, transport=self._transport)

    async def _list_models(self) -> dict[str, Any]:
        async with self._client() as client:
            return await self._request(client, "GET", "/models", None)

    async def _generate_all(self, prompts: list[str], config: DecodingConfig,
                            params: dict[str, Any], model: str,
                            on_batch: Callable[[int], None] | None) -> list[Generation]:
        semaphore = asyncio.Semaphore(self.concurrency)
        async with self._client() as client:
            async def one(prompt: str) -> Generation:
                async with semaphore:
                    gen = await self._generate_one(client, prompt, config, params, model)
                if on_batch is not None:
                    on_batch(1)
                return gen

            return list(await asyncio.gather(*(one(p) for p in prompts)))

    async def _generate_one(self, client: Any, prompt: str, config: DecodingConfig,
                            params: dict[str, Any], model: str) -> Generation:
        if self.chat:
            body = {"model": model, "messages": [{"role": "user", "content": prompt}], **params}
            data = await self._request(client, "POST", "/chat/completions", body)
        else:
            body = {"model": model, "prompt": prompt, **params}
            data = await self._request(client, "POST", "/completions", body)
        path = "/chat/completions" if self.chat else "/completions"
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if self.chat else choice["text"]
            finish = choice.get("finish_reason") or "stop"
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"unexpected response shape: {str(data)[:200]}",
                               url=self._url(path)) from None
        text = text or ""
        # Servers cut stop sequences themselves; cutting again is a no-op for those that do and
        # fixes the few that echo the stop sequence.
        cut, stop = truncate_at_stop(text, config.stop)
        usage = data.get("usage") or {}
        n_out = usage.get("completion_tokens")
        n_prompt = usage.get("prompt_tokens")
        return Generation(
            prompt=prompt, text=cut, finish_reason="length" if finish == "length" else "stop",
            n_prompt_tokens=int(n_prompt) if isinstance(n_prompt, int) else 0,
            # Without usage, whitespace words are the only count available (documented estimate).
            n_output_tokens=int(n_out) if isinstance(n_out, int) else len(cut.split()),
            stop_sequence=stop, seed=config.seed,
        )

    async def _request(self, client: Any, method: str, path: str, body: dict[str, Any] | None
                       ) -> dict[str, Any]:
        import httpx

        url = self._url(path)
        last: BackendError | None = None
        for attempt in range(self.retry.max_retries + 1):
            retry_after: float | None = None
            try:
                response = await client.request(method, url, json=body)
            except httpx.ConnectError as exc:
                last = BackendError(f"cannot connect ({_reason(exc)}); is the server running?",
                                    url=url)
            except httpx.TimeoutException as exc:
                kind = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for the answer"
                limit = self.connect_timeout if isinstance(exc, httpx.ConnectTimeout) else self.timeout
                last = BackendError(f"timed out after {limit:g} s {kind} (raise the timeout if the "
                                    "server is just slow)", url=url)
            except httpx.HTTPError as exc:
                last = BackendError(f"HTTP failure: {_reason(exc)}", url=url)
            else:
                if response.status_code < 400:
                    try:
                        data = response.json()
                    except ValueError:
                        raise BackendError(f"answer is not JSON: {response.text[:200]!r}",
                                           url=url, status=response.status_code) from None
                    if not isinstance(data, dict):
                        raise BackendError("answer is not a JSON object", url=url,
                                           status=response.status_code)
                    return data
                message = _error_message(response)
                last = BackendError(f"HTTP {response.status_code}: {message}", url=url,
                                    status=response.status_code)
                if response.status_code != 429 and response.status_code < 500:
                    raise last  # the request itself is wrong: retrying cannot help
                retry_after = _retry_after(response)
            if attempt < self.retry.max_retries:
                await asyncio.sleep(self.retry.delay(attempt, retry_after))
        assert last is not None
        tries = self.retry.max_retries + 1
        raise BackendError(f"{last.message} [{tries} attempt{'s' * (tries > 1)}]",
                           url=url, status=last.status)


def _reason(exc: BaseException) -> str:
    """The most telling cause in the exception chain (httpx wraps the OS error)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or "refused" in str(seen).lower():
            return "connection refused"
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


def _error_message(response: Any) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data))
        if isinstance(err, dict):
            return str(err.get("message", err))
        return str(err)
    return str(data)[:300]


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _run_sync(coro: Any) -> Any:
    """Run a coroutine from sync code, also when the caller already runs an event loop
    (notebooks): then it runs on a helper thread with its own loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
