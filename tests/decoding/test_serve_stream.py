"""`staytuned serve` streaming (server-sent events in OpenAI's chunk format) and its error bodies,
against a real server on 127.0.0.1 with the tiny model, through the official `openai` client."""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

sys.path.insert(0, str(Path(__file__).parent))
# These imports follow the importorskip calls on purpose (E402).
from servers import free_port, staytuned_server  # noqa: E402

from staytuned.decoding.server import StreamedChoice, stable_prefix  # noqa: E402
from staytuned.decoding.stopping import truncate_at_stop  # noqa: E402
from staytuned.hparams.decode import DecodingConfig  # noqa: E402

pytestmark = pytest.mark.slow  # a real server (uvicorn) on tiny-llama


@pytest.fixture(scope="module")
def url():
    with staytuned_server("tiny-llama") as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0)


def _collect(stream):
    """(texts by choice index, finish reasons by index, every chunk) of an openai stream."""
    texts: dict[int, str] = {}
    reasons: dict[int, str | None] = {}
    chunks = list(stream)  # iteration ends only at `data: [DONE]`
    for c in chunks:
        for ch in c.choices:
            piece = ch.delta.content if hasattr(ch, "delta") else ch.text
            texts[ch.index] = texts.get(ch.index, "") + (piece or "")
            if ch.finish_reason is not None:
                assert reasons.get(ch.index) is None, "two final chunks for one choice"
                reasons[ch.index] = ch.finish_reason
    return texts, reasons, chunks


def test_streamed_completion_joins_to_the_non_stream_greedy_text(client):
    args = {"model": "tiny-llama", "prompt": "The cat sat on", "max_tokens": 24, "temperature": 0}
    whole = client.completions.create(**args)
    texts, reasons, chunks = _collect(client.completions.create(stream=True, **args))
    assert texts == {0: whole.choices[0].text} and whole.choices[0].text
    assert reasons == {0: whole.choices[0].finish_reason}
    assert all(c.object == "text_completion" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    # Token by token, not the whole text in one piece (one token can hold back the one before).
    assert sum(1 for c in chunks if c.choices and c.choices[0].text) >= 10
    assert chunks[-1].choices[0].finish_reason is not None


def test_streamed_chat_joins_to_the_non_stream_greedy_message(client):
    args = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi there"}],
            "max_tokens": 20, "temperature": 0}
    whole = client.chat.completions.create(**args)
    texts, reasons, chunks = _collect(client.chat.completions.create(stream=True, **args))
    assert texts == {0: whole.choices[0].message.content}
    assert reasons == {0: whole.choices[0].finish_reason}
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 5


def test_stream_honours_stop_sequences_and_n_with_seeded_sampling(client):
    args = {"model": "tiny-llama", "prompt": "Hello", "max_tokens": 30, "temperature": 0}
    full = client.completions.create(**args).choices[0].text
    stop = full[8:10]
    texts, reasons, _ = _collect(client.completions.create(stream=True, stop=[stop], **args))
    assert texts == {0: full[: full.find(stop)]} and reasons == {0: "stop"}

    sampled = {"model": "tiny-llama", "messages": [{"role": "user", "content": "a"}], "n": 3,
               "max_tokens": 12, "temperature": 1.0, "seed": 5}
    whole = client.chat.completions.create(**sampled)
    texts, reasons, _ = _collect(client.chat.completions.create(stream=True, **sampled))
    assert texts == {c.index: c.message.content for c in whole.choices}
    assert reasons == {c.index: c.finish_reason for c in whole.choices}
    assert len(set(texts.values())) > 1  # three different samples, each kept apart


def test_stream_usage_chunk_and_raw_event_format(url, client):
    body = {"prompt": "Hello", "max_tokens": 8, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{url}/completions", json=body, timeout=120) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"  # the stream ends properly
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: ") for e in events[:-1])
    usage = payloads[-1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] >= 1
    whole = client.completions.create(model="tiny-llama", prompt="Hello", max_tokens=8, temperature=0)
    assert usage["usage"] == whole.usage.model_dump(exclude_none=True)
    assert payloads[-2]["choices"][0]["finish_reason"] == whole.choices[0].finish_reason


def test_errors_name_the_problem_and_the_clients_parameter(url, client):
    r = httpx.post(f"{url}/chat/completions", content=b'{"messages": [], "max_tokens" 3}',
                   headers={"content-type": "application/json"})
    err = r.json()["error"]
    assert r.status_code == 400 and err["param"] is None
    assert err["message"] == ("request body is not valid JSON: Expecting ':' delimiter: "
                              "line 1 column 31")
    r = httpx.post(f"{url}/completions", content=b"[1, 2]")
    assert r.status_code == 400 and "must be a JSON object" in r.json()["error"]["message"]

    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny-llama", prompt="x", max_tokens=0, stream=True)
    err = info.value.body
    assert err["param"] == "max_tokens"
    assert "max_tokens" in err["message"] and "max_new_tokens" not in err["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "x"}],
                                       max_completion_tokens=-2)
    assert info.value.body["param"] == "max_completion_tokens"
    assert "max_new_tokens" not in info.value.body["message"]


def test_streamed_pieces_always_join_to_the_final_text():
    """Token by token, the client only ever gets a prefix of the final text: byte tokens that
    complete a character later, and text that could still become a stop sequence, wait."""
    from staytuned.models import tiny_tokenizer

    tok = tiny_tokenizer()
    rng = random.Random(0)
    eos = {tok.eos_token_id}

    def decode(ids):
        return tok.decode(ids, skip_special_tokens=True)

    sample = tok("naïve café €5 😀 done", add_special_tokens=False)["input_ids"]
    cases = [(sample, [])]
    for _ in range(2000):
        ids = [rng.randrange(len(tok)) for _ in range(rng.randrange(1, 30))]
        stops = [decode(ids[i:i + rng.randrange(1, 4)]) for i in range(rng.randrange(0, 3))]
        cases.append((ids, [s for s in stops if s]))
    cases.append((sample, [decode(sample[2:5])]))
    for ids, stops in cases:
        choice = StreamedChoice(ids=[])
        pieces = [choice.advance(t, decode, eos, stops) for t in ids]
        upto = ids[: next((i for i, t in enumerate(ids) if t in eos), len(ids))]
        final = truncate_at_stop(decode(upto), stops)[0]
        pieces.append(choice.finish(final))
        assert "".join(pieces) == final, (ids, stops)
    # A multi-byte character is never sent half-decoded.
    assert stable_prefix("caf", "caf\ufffd") == "caf"
    assert stable_prefix("ab", "abc", ["cd"]) == "ab"
    assert stable_prefix("abc", "abcd", ["cx"]) == "ab"  # "c" may begin the stop "cx"
    assert stable_prefix("abcd", "abcde", ["x", "bc"]) == "a"  # the stop "bc" is there


def test_tokens_reach_the_client_while_the_model_is_still_generating(tiny_backend):
    """Generation pauses after a few tokens until the client has received a piece of text: a
    server that sent the answer only at the end would never release it."""
    import uvicorn
    from transformers import StoppingCriteriaList

    from staytuned.decoding.hf_backend import HFBackend
    from staytuned.decoding.server import create_app

    gate = threading.Event()
    released: list[bool] = []
    width = [0]  # prompt length of the current generate call

    class Gate:
        def __call__(self, input_ids, scores, **kwargs):
            import torch

            if not released and input_ids.shape[1] - width[0] >= 4:
                released.append(gate.wait(timeout=120))
            return torch.zeros(input_ids.shape[0], dtype=torch.bool)

    class GatedModel:
        def __getattr__(self, name):
            return getattr(tiny_backend.model, name)

        def generate(self, **kwargs):
            width[0] = kwargs["input_ids"].shape[1]
            kwargs["stopping_criteria"] = StoppingCriteriaList([*kwargs["stopping_criteria"], Gate()])
            return tiny_backend.model.generate(**kwargs)

    backend = HFBackend(GatedModel(), tiny_backend.tokenizer, model_name="gated", chat=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(backend), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        body = {"prompt": "Hello", "max_tokens": 16, "temperature": 0, "stream": True}
        text = ""
        with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/completions", json=body,
                          timeout=300) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    text += json.loads(line[6:])["choices"][0]["text"]
                    if text:
                        gate.set()
        assert released == [True]
        whole = backend.generate(["Hello"], DecodingConfig(temperature=0, max_new_tokens=16),
                                 raw=True)[0]
        assert text == whole.text
    finally:
        gate.set()
        server.should_exit = True
        thread.join(timeout=60)
