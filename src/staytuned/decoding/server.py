"""``staytuned serve``: the local backend behind an OpenAI-compatible HTTP API.

Endpoints: ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions``,
``GET /health``. Request bodies take the OpenAI fields plus the vLLM extras ``top_k`` (-1 or 0 =
off), ``min_p`` and ``repetition_penalty``; bad values answer 400 with an OpenAI-style error body
naming the parameter. Generation runs one request at a time (a lock per app): on a CPU, parallel
forward passes only compete for the same cores. Streaming is not offered (``stream: true`` -> 400).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from staytuned.decoding.config import DecodingConfig
from staytuned.errors import InputError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from staytuned.decoding.hf_backend import HFBackend

# OpenAI's defaults: 16 tokens for /v1/completions; chat has no fixed cap, we pick a finite one.
COMPLETIONS_MAX_TOKENS = 16
CHAT_MAX_TOKENS = 256

_SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "frequency_penalty",
                    "presence_penalty", "repetition_penalty", "seed", "stop")


def _config_from_body(body: dict[str, Any], default_max_tokens: int) -> DecodingConfig:
    """Request fields -> DecodingConfig (None = the OpenAI default; top_k -1 = off, as in vLLM)."""
    data: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    data["max_new_tokens"] = default_max_tokens if max_tokens is None else max_tokens
    for name in _SAMPLING_FIELDS:
        if body.get(name) is not None:
            data[name] = body[name]
    if data.get("top_k") == -1:
        data["top_k"] = 0
    return DecodingConfig.from_dict(data)


def create_app(backend: HFBackend, *, model_name: str | None = None, api_key: str | None = None,
               chat_max_tokens: int = CHAT_MAX_TOKENS) -> FastAPI:
    """A FastAPI app serving ``backend`` under ``model_name`` (default: the backend's name)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    served = model_name or backend.model_name
    app = FastAPI(title="staytuned", description=f"OpenAI-compatible API for {served}")
    lock = threading.Lock()
    started = int(time.time())

    def error(status: int, message: str, *, param: str | None = None,
              kind: str = "invalid_request_error", code: str | None = None) -> JSONResponse:
        return JSONResponse(status_code=status, content={
            "error": {"message": message, "type": kind, "param": param, "code": code}})

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return error(400, f"{loc}: {first.get('msg', 'invalid request')}", param=loc or None)

    @app.middleware("http")
    async def _auth(request: Request, call_next: Any) -> Any:
        if api_key and request.url.path.startswith("/v1/"):
            if request.headers.get("authorization", "") != f"Bearer {api_key}":
                return error(401, "invalid or missing API key", kind="authentication_error",
                             code="invalid_api_key")
        return await call_next(request)

    def check_body(body: Any) -> JSONResponse | None:
        if not isinstance(body, dict):
            return error(400, "the request body must be a JSON object")
        requested = body.get("model")
        if requested not in (None, "", served):
            return error(404, f"model {requested!r} is not served here; available: {served!r}",
                         param="model", code="model_not_found")
        if body.get("stream"):
            return error(400, "streaming is not supported by staytuned serve", param="stream")
        n = body.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 16:
            return error(400, f"n must be an integer in [1, 16], got {n!r}", param="n")
        return None

    def run(prompts: list[str], config: DecodingConfig, n: int) -> list[Any]:
        # n samples of one prompt: consecutive rows of one batch draw different tokens.
        expanded = [p for p in prompts for _ in range(n)]
        with lock:
            return backend.generate(expanded, config, raw=True)

    def usage(gens: list[Any], prompt_tokens: int) -> dict[str, int]:
        completion = sum(g.n_output_tokens for g in gens)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model": served}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [
            {"id": served, "object": "model", "created": started, "owned_by": "staytuned"}]}

    @app.post("/v1/completions")
    def completions(body: dict[str, Any]) -> Any:
        if (bad := check_body(body)) is not None:
            return bad
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            return error(400, "prompt must be a string or a non-empty list of strings", param="prompt")
        try:
            config = _config_from_body(body, COMPLETIONS_MAX_TOKENS)
        except InputError as exc:
            return error(400, str(exc), param=exc.field)
        n = body.get("n", 1)
        gens = run(prompts, config, n)
        choices = [{"index": i, "text": g.text, "finish_reason": g.finish_reason, "logprobs": None}
                   for i, g in enumerate(gens)]
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
                "created": int(time.time()), "model": served, "choices": choices,
                "usage": usage(gens, sum(g.n_prompt_tokens for g in gens[::n]))}

    @app.post("/v1/chat/completions")
    def chat_completions(body: dict[str, Any]) -> Any:
        if (bad := check_body(body)) is not None:
            return bad
        messages = body.get("messages")
        if (not isinstance(messages, list) or not messages
                or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                           and isinstance(m.get("content"), str) for m in messages)):
            return error(400, "messages must be a non-empty list of {role, content} objects "
                              "with string content", param="messages")
        try:
            config = _config_from_body(body, chat_max_tokens)
        except InputError as exc:
            return error(400, str(exc), param=exc.field)
        prompt = backend.chat_prompt([{"role": m["role"], "content": m["content"]} for m in messages])
        n = body.get("n", 1)
        gens = run([prompt], config, n)
        choices = [{"index": i, "message": {"role": "assistant", "content": g.text},
                    "finish_reason": g.finish_reason, "logprobs": None}
                   for i, g in enumerate(gens)]
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                "created": int(time.time()), "model": served, "choices": choices,
                "usage": usage(gens, gens[0].n_prompt_tokens)}

    return app


def serve(backend: HFBackend, *, host: str = "127.0.0.1", port: int = 8000,
          model_name: str | None = None, api_key: str | None = None,
          log_level: str = "warning") -> None:
    """Run the app with uvicorn until interrupted (blocking)."""
    import uvicorn

    app = create_app(backend, model_name=model_name, api_key=api_key)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
