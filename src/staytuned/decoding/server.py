"""``staytuned serve``: the local backend behind an OpenAI-compatible HTTP API.

Endpoints: ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions``,
``GET /health``. Request bodies take the OpenAI fields plus the vLLM extras ``top_k`` (-1 or 0 =
off), ``min_p`` and ``repetition_penalty``; bad values answer 400 with an OpenAI-style error body
naming the parameter as the client spelled it. ``"stream": true`` answers server-sent events in
OpenAI's chunk format, token by token, ending with ``data: [DONE]``. Generation runs one request
at a time (a lock per app): on a CPU, parallel forward passes only compete for the same cores.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from staytuned.decoding.stopping import truncate_at_stop
from staytuned.errors import InputError
from staytuned.hparams.decode import DecodingConfig

if TYPE_CHECKING:
    from fastapi import FastAPI

    from staytuned.decoding.base import Generation
    from staytuned.decoding.hf_backend import HFBackend

log = logging.getLogger(__name__)

# OpenAI's defaults: 16 tokens for /v1/completions; chat has no fixed cap, we pick a finite one.
COMPLETIONS_MAX_TOKENS = 16
CHAT_MAX_TOKENS = 256

_SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "frequency_penalty",
                    "presence_penalty", "repetition_penalty", "seed", "stop")
# The request fields that become max_new_tokens, in the order OpenAI gives them precedence.
_MAX_TOKENS_FIELDS = ("max_completion_tokens", "max_tokens")


class ApiError(Exception):
    """A request the API refuses, as OpenAI would describe it (status, message, param, code)."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None,
                 kind: str = "invalid_request_error", code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.param, self.kind, self.code = message, status, param, kind, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.code}}


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or an ApiError saying what is wrong with it and where."""
    if not raw.strip():
        raise ApiError("request body is empty; expected a JSON object")
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(f"request body is not valid JSON: {exc.msg}: "
                       f"line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError:
        raise ApiError("request body is not valid JSON: it is not UTF-8 text") from None
    if not isinstance(body, dict):
        raise ApiError(f"request body must be a JSON object, got a JSON {type(body).__name__}")
    return body


def _config_from_body(body: dict[str, Any], default_max_tokens: int) -> DecodingConfig:
    """Request fields -> DecodingConfig (None = the OpenAI default; top_k -1 = off, as in vLLM).

    An invalid value raises ApiError naming the field as the client sent it: DecodingConfig
    speaks of ``max_new_tokens``, a client of ``max_tokens`` or ``max_completion_tokens``.
    """
    data: dict[str, Any] = {"max_new_tokens": default_max_tokens}
    spelled: dict[str, str] = {}
    for key in _MAX_TOKENS_FIELDS:
        if body.get(key) is not None:
            data["max_new_tokens"], spelled["max_new_tokens"] = body[key], key
            break
    for name in _SAMPLING_FIELDS:
        if body.get(name) is not None:
            data[name] = body[name]
    if data.get("top_k") == -1:
        data["top_k"] = 0
    try:
        return DecodingConfig.from_dict(data)
    except InputError as exc:
        param = spelled.get(exc.field or "", exc.field)
        message = str(exc)
        if exc.field and param and param != exc.field:
            message = re.sub(rf"\b{re.escape(exc.field)}\b", param, message)
        raise ApiError(message, param=param) from None


def stable_prefix(previous: str, current: str, stops: Sequence[str] = ()) -> str:
    """The part of ``current`` (the decoded tokens so far) that no later token can change.

    ``previous`` is the decoding without the newest token. Decoding is not append-only: a token
    can complete a multi-byte character (a trailing U+FFFD turns into a letter) or let the
    tokenizer's clean-up rewrite the text before it (" ." -> "."), so only what both decodings
    agree on, less trailing replacement characters, is final. A tail of that which could still
    grow into a stop sequence is held back too: the final text is cut before the stop.
    """
    ready = os.path.commonprefix([previous, current]).rstrip("\ufffd")  # noqa: RUF071 - texts, not paths
    if not stops:
        return ready
    cut, _ = truncate_at_stop(current, stops)
    ready = ready[:len(cut)]
    longest = max(len(s) for s in stops)
    for start in range(max(0, len(ready) - longest + 1), len(ready)):
        if any(s.startswith(ready[start:]) for s in stops):
            return ready[:start]
    return ready


@dataclass
class StreamedChoice:
    """One choice being streamed: its tokens so far and the text the client already has.

    ``sent`` only grows by :func:`stable_prefix` steps, so it stays a prefix of the final text
    that the non-streaming path would return; :meth:`finish` sends the rest of that text.
    """

    ids: list[int]
    text: str = ""
    sent: str = ""
    ended: bool = False

    def advance(self, token: int, decode: Callable[[list[int]], str], eos: set[int],
                stops: Sequence[str]) -> str:
        """Take one generated token; return the text newly safe to send ('' if none)."""
        if self.ended:
            return ""
        if token in eos:
            # What follows an end-of-sequence token is padding, never part of the answer.
            self.ended = True
            return ""
        self.ids.append(token)
        previous, self.text = self.text, decode(self.ids)
        return self._send(stable_prefix(previous, self.text, stops))

    def finish(self, final: str) -> str:
        """The rest of ``final`` (the generation's text); '' if the client already has it all."""
        if not final.startswith(self.sent):
            log.warning("streamed text %r is not a prefix of the final text %r", self.sent, final)
            return ""
        return self._send(final)

    def _send(self, ready: str) -> str:
        if len(ready) <= len(self.sent) or not ready.startswith(self.sent):
            return ""
        piece, self.sent = ready[len(self.sent):], ready
        return piece


class _TokenFeed:
    """A streamer for ``model.generate`` (its put/end protocol): hands each step's tokens on.

    ``generate`` first puts the prompt ids (one row per sequence), then each step's new tokens
    (one per row); ``end`` closes one generate call. Rows are numbered across calls, in call
    order, which is the order of the backend's results for prompts of one length.
    """

    def __init__(self, emit: Callable[[tuple[Any, ...]], None]) -> None:
        self._emit = emit
        self._offset = 0
        self._rows = 0
        self._expect_prompt = True

    def put(self, value: Any) -> None:
        if self._expect_prompt:
            self._expect_prompt = False
            self._rows = int(value.shape[0])
            return
        self._emit(("tokens", self._offset, value.reshape(self._rows, -1).tolist()))

    def end(self) -> None:
        self._offset += self._rows
        self._expect_prompt = True


class _Cancelled:
    """A stopping criterion that ends every row once the client has gone away."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool,
                          device=input_ids.device)


def _sse(payload: Any) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n"


def create_app(backend: HFBackend, *, model_name: str | None = None, api_key: str | None = None,
               chat_max_tokens: int = CHAT_MAX_TOKENS) -> FastAPI:
    """A FastAPI app serving ``backend`` under ``model_name`` (default: the backend's name)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.concurrency import run_in_threadpool

    served = model_name or backend.model_name
    app = FastAPI(title="staytuned", description=f"OpenAI-compatible API for {served}")
    lock = threading.Lock()
    started = int(time.time())

    def error(exc: ApiError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=exc.body())

    @app.middleware("http")
    async def _auth(request: Request, call_next: Any) -> Any:
        if (api_key and request.url.path.startswith("/v1/")
                and request.headers.get("authorization", "") != f"Bearer {api_key}"):
            return error(ApiError("invalid or missing API key", status=401,
                                  kind="authentication_error", code="invalid_api_key"))
        return await call_next(request)

    async def read_request(request: Request) -> dict[str, Any]:
        body = parse_body(await request.body())
        requested = body.get("model")
        if requested not in (None, "", served):
            raise ApiError(f"model {requested!r} is not served here; available: {served!r}",
                           status=404, param="model", code="model_not_found")
        if body.get("stream") not in (None, True, False):
            raise ApiError(f"stream must be true or false, got {body['stream']!r}", param="stream")
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise ApiError(f"stream_options must be an object, got {options!r}",
                           param="stream_options")
        n = body.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 16:
            raise ApiError(f"n must be an integer in [1, 16], got {n!r}", param="n")
        return body

    def run(prompts: list[str], config: DecodingConfig, n: int) -> list[Generation]:
        # n samples of one prompt: consecutive rows of one batch draw different tokens.
        expanded = [p for p in prompts for _ in range(n)]
        with lock:
            return backend.generate(expanded, config, raw=True)

    def usage(gens: Sequence[Generation], n: int) -> dict[str, int]:
        prompt = sum(g.n_prompt_tokens for g in gens[::n])
        completion = sum(g.n_output_tokens for g in gens)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    def stream(prompts: list[str], config: DecodingConfig, n: int, *, chat: bool,
               include_usage: bool) -> StreamingResponse:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        cancel = threading.Event()
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())

        def emit(event: tuple[Any, ...]) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:  # the event loop is closed: nobody is listening any more
                cancel.set()

        def produce() -> None:
            feed = _TokenFeed(emit)
            try:
                with lock:
                    # One prompt per call: its n rows have one length, so the backend keeps them
                    # in order and the feed's row numbers are the choice indices. Streaming goes
                    # through HFBackend.generate itself, so batching, seeding, processors, stop
                    # sequences and the final cut are exactly those of the non-streaming answer.
                    gens = [g for p in prompts
                            for g in backend.generate([p] * n, config, raw=True, streamer=feed,
                                                      stop_when=_Cancelled(cancel))]
                emit(("done", gens))
            except Exception as exc:  # reported to the client in the stream, and logged here
                log.exception("streamed generation failed")
                emit(("error", exc))

        def chunk(index: int, *, text: str | None = None, role: bool = False,
                  finish: str | None = None) -> dict[str, Any]:
            if chat:
                delta: dict[str, Any] = {}
                if role:
                    delta = {"role": "assistant", "content": ""}
                elif text is not None:
                    delta = {"content": text}
                choice: dict[str, Any] = {"index": index, "delta": delta}
            else:
                choice = {"index": index, "text": text or ""}
            choice.update(logprobs=None, finish_reason=finish)
            return {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                    "created": created, "model": served, "choices": [choice]}

        async def events_stream() -> AsyncIterator[str]:
            choices = [StreamedChoice(ids=[]) for _ in range(len(prompts) * n)]
            eos = set(backend.eos_ids())  # where the backend cuts each row's text
            stops = config.stop

            def decode(ids: list[int]) -> str:
                return backend.tokenizer.decode(ids, skip_special_tokens=True)

            threading.Thread(target=produce, name="staytuned-stream", daemon=True).start()
            try:
                if chat:
                    for i in range(len(choices)):
                        yield _sse(chunk(i, role=True))
                while True:
                    kind, *payload = await events.get()
                    if kind == "tokens":
                        offset, rows = payload
                        for j, tokens in enumerate(rows):
                            piece = "".join(choices[offset + j].advance(t, decode, eos, stops)
                                            for t in tokens)
                            if piece:
                                yield _sse(chunk(offset + j, text=piece))
                    elif kind == "done":
                        gens: list[Generation] = payload[0]
                        for i, (choice, gen) in enumerate(zip(choices, gens, strict=True)):
                            if piece := choice.finish(gen.text):
                                yield _sse(chunk(i, text=piece))
                            yield _sse(chunk(i, finish=gen.finish_reason))
                        if include_usage:
                            yield _sse({"id": rid, "object": chunk(0)["object"], "created": created,
                                        "model": served, "choices": [], "usage": usage(gens, n)})
                        yield _sse("[DONE]")
                        return
                    else:
                        failure = ApiError(f"generation failed: {payload[0]}", status=500,
                                           kind="server_error")
                        yield _sse(failure.body())
                        return
            finally:
                # Normal end, or the client hung up: either way stop generating for it.
                cancel.set()

        return StreamingResponse(events_stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache"})

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model": served}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [
            {"id": served, "object": "model", "created": started, "owned_by": "staytuned"}]}

    # The POST endpoints are plain Starlette routes: they read the raw body themselves, so that a
    # malformed one gets an error naming the JSON problem rather than FastAPI's validation text.
    async def completions(request: Request) -> Response:
        try:
            body = await read_request(request)
            prompt = body.get("prompt")
            prompts = [prompt] if isinstance(prompt, str) else prompt
            if (not isinstance(prompts, list) or not prompts
                    or not all(isinstance(p, str) for p in prompts)):
                raise ApiError("prompt must be a string or a non-empty list of strings",
                               param="prompt")
            config = _config_from_body(body, COMPLETIONS_MAX_TOKENS)
        except ApiError as exc:
            return error(exc)
        n = body.get("n", 1)
        if body.get("stream"):
            return stream(prompts, config, n, chat=False,
                          include_usage=bool((body.get("stream_options") or {}).get("include_usage")))
        gens = await run_in_threadpool(run, prompts, config, n)
        choices = [{"index": i, "text": g.text, "finish_reason": g.finish_reason, "logprobs": None}
                   for i, g in enumerate(gens)]
        return JSONResponse({"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
                             "created": int(time.time()), "model": served, "choices": choices,
                             "usage": usage(gens, n)})

    async def chat_completions(request: Request) -> Response:
        try:
            body = await read_request(request)
            messages = body.get("messages")
            if (not isinstance(messages, list) or not messages
                    or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                               and isinstance(m.get("content"), str) for m in messages)):
                raise ApiError("messages must be a non-empty list of {role, content} objects "
                               "with string content", param="messages")
            config = _config_from_body(body, chat_max_tokens)
        except ApiError as exc:
            return error(exc)
        prompt = backend.chat_prompt([{"role": m["role"], "content": m["content"]}
                                      for m in messages])
        n = body.get("n", 1)
        if body.get("stream"):
            return stream([prompt], config, n, chat=True,
                          include_usage=bool((body.get("stream_options") or {}).get("include_usage")))
        gens = await run_in_threadpool(run, [prompt], config, n)
        choices = [{"index": i, "message": {"role": "assistant", "content": g.text},
                    "finish_reason": g.finish_reason, "logprobs": None}
                   for i, g in enumerate(gens)]
        return JSONResponse({"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                             "created": int(time.time()), "model": served, "choices": choices,
                             "usage": usage(gens, n)})

    app.add_route("/v1/completions", completions, methods=["POST"])
    app.add_route("/v1/chat/completions", chat_completions, methods=["POST"])
    return app


def serve(backend: HFBackend, *, host: str = "127.0.0.1", port: int = 8000,
          model_name: str | None = None, api_key: str | None = None,
          log_level: str = "warning") -> None:
    """Run the app with uvicorn until interrupted (blocking)."""
    import uvicorn

    app = create_app(backend, model_name=model_name, api_key=api_key)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
