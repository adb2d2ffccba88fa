"""The HTTP backend against real servers on this machine: `staytuned serve` (tiny model; SmolLM2
in a slow test), the official `openai` client, a server that is down and one that is too slow."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

sys.path.insert(0, str(Path(__file__).parent))
from servers import free_port, scripted_server, silent_server, staytuned_server  # noqa: E402

from staytuned.decoding.http_backend import BackendError, HTTPBackend, RetryPolicy  # noqa: E402
from staytuned.errors import InputError  # noqa: E402
from staytuned.hparams.decode import DecodingConfig  # noqa: E402

PROMPTS = ["The cat sat on", "Hello", "A longer prompt for the server"]
FAST_RETRY = RetryPolicy(max_retries=1, backoff=0.01)


@pytest.fixture(scope="module")
def tiny_url():
    with staytuned_server("tiny-llama") as url:
        yield url


@pytest.mark.slow
def test_server_greedy_matches_local_generation(tiny_url, tiny_backend):
    client = HTTPBackend(tiny_url, flavor="staytuned", concurrency=2)
    assert client.model_name == "tiny-llama"  # asked from /v1/models
    cfg = DecodingConfig(temperature=0, max_new_tokens=10, frequency_penalty=0.5)
    remote = client.generate(PROMPTS, cfg)
    local = tiny_backend.generate(PROMPTS, cfg)
    assert [g.text for g in remote] == [g.text for g in local]
    assert [g.n_output_tokens for g in remote] == [g.n_output_tokens for g in local]
    assert [g.finish_reason for g in remote] == [g.finish_reason for g in local]


@pytest.mark.slow
def test_server_seeded_sampling_reproduces_and_stops_cut(tiny_url, tiny_backend):
    client = HTTPBackend(tiny_url, flavor="vllm")
    cfg = DecodingConfig(temperature=1.0, top_k=0, max_new_tokens=12, seed=7)
    first = [g.text for g in client.generate(PROMPTS, cfg)]
    assert first == [g.text for g in client.generate(PROMPTS, cfg)]
    full = tiny_backend.generate(PROMPTS[:1], DecodingConfig(temperature=0, max_new_tokens=20))[0].text
    stop = full[5:7]
    gen = client.generate(PROMPTS[:1], DecodingConfig(temperature=0, max_new_tokens=20, stop=[stop]))[0]
    assert gen.text == full[: full.find(stop)] and gen.finish_reason == "stop"


@pytest.mark.slow
def test_official_openai_client(tiny_url, tiny_backend):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=tiny_url, api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list().data] == ["tiny-llama"]
    comp = client.completions.create(model="tiny-llama", prompt="Hello", max_tokens=6, temperature=0)
    local = tiny_backend.generate(["Hello"], DecodingConfig(temperature=0, max_new_tokens=6))[0]
    assert comp.choices[0].text == local.text
    assert comp.usage.completion_tokens == local.n_output_tokens
    two = client.completions.create(model="tiny-llama", prompt=["a", "b"], max_tokens=3, temperature=0, n=2)
    assert len(two.choices) == 4
    chat = client.chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": "hi"}], max_tokens=5, temperature=0,
        extra_body={"top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0})
    rendered = tiny_backend.chat_prompt([{"role": "user", "content": "hi"}])
    expected = tiny_backend.generate([rendered], DecodingConfig(temperature=0, max_new_tokens=5), raw=True)[0]
    assert chat.choices[0].message.content == expected.text
    assert chat.choices[0].message.role == "assistant"
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny-llama", prompt="x", temperature=3)
    assert "temperature" in str(info.value)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="x")


@pytest.mark.slow
def test_server_refuses_bad_values_with_openai_error_bodies(tiny_url):
    r = httpx.post(f"{tiny_url}/completions", json={"prompt": "x", "top_p": 0})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "top_p" and "(0, 1]" in r.json()["error"]["message"]
    r = httpx.post(f"{tiny_url}/completions", json={"prompt": "x", "max_tokens": -1})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"  # the client's name
    r = httpx.post(f"{tiny_url}/chat/completions", json={"messages": "hi"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.post(f"{tiny_url}/completions", json={"prompt": "x", "stream": "yes"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream"


def test_client_refuses_fields_a_flavor_cannot_take_before_any_request():
    client = HTTPBackend("http://127.0.0.1:9/v1", model="m", flavor="openai")
    with pytest.raises(InputError, match="top_k"):
        client.generate(["x"], DecodingConfig(top_k=5))
    with pytest.raises(InputError, match="base_url"):
        HTTPBackend("localhost:8000")


def test_server_that_is_down_gives_a_clear_error_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    client = HTTPBackend(url, model="m", retry=FAST_RETRY)
    with pytest.raises(BackendError) as info:
        client.generate(["x"], DecodingConfig(max_new_tokens=2))
    text = str(info.value)
    assert f"{url}/completions" in text and "connection refused" in text
    assert "is the server running" in text and "2 attempts" in text


def test_server_that_is_too_slow_times_out_with_a_clear_error():
    with silent_server() as (url, accepted):
        client = HTTPBackend(url, model="m", timeout=0.3, retry=FAST_RETRY)
        with pytest.raises(BackendError) as info:
            client.generate(["x"], DecodingConfig(max_new_tokens=2))
    text = str(info.value)
    assert f"{url}/completions" in text and "timed out after 0.3 s" in text
    assert len(accepted) == 2  # one try + one retry


def test_retries_5xx_and_429_then_succeeds():
    with scripted_server([503, 429]) as (url, rec):
        client = HTTPBackend(url, model="m", retry=RetryPolicy(max_retries=2, backoff=0.01))
        gen = client.generate(["p"], DecodingConfig(max_new_tokens=2))[0]
    assert gen.text == "echo:p" and rec.requests == 3
    assert gen.n_output_tokens == 2


def test_client_errors_are_not_retried_and_carry_the_server_message():
    with scripted_server([400]) as (url, rec):
        client = HTTPBackend(url, model="m", retry=RetryPolicy(max_retries=3, backoff=0.01))
        with pytest.raises(BackendError, match="HTTP 400: scripted 400") as info:
            client.generate(["p"], DecodingConfig(max_new_tokens=2))
    assert rec.requests == 1 and info.value.status == 400


def test_concurrency_is_bounded_and_order_kept():
    with scripted_server(delay=0.05) as (url, rec):
        client = HTTPBackend(url, model="m", concurrency=2)
        gens = client.generate([f"p{i}" for i in range(8)], DecodingConfig(max_new_tokens=2, stop=["zz"]))
    assert [g.text for g in gens] == [f"echo:p{i}" for i in range(8)]
    assert rec.max_in_flight <= 2 and rec.requests == 8
    body = rec.bodies[0]  # the vllm flavor's spelling went over the wire
    assert body["top_k"] == -1 and body["max_tokens"] == 2 and body["stop"] == ["zz"]


@pytest.mark.slow
def test_smollm2_server_with_openai_client():
    openai = pytest.importorskip("openai")
    from staytuned.decoding.hf_backend import HFBackend

    with staytuned_server("smollm2-135m") as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
        chat = client.chat.completions.create(
            model="smollm2-135m", messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=12, temperature=0)
        answer = chat.choices[0].message.content
        remote = HTTPBackend(url, chat=True, timeout=600).generate(
            ["What is the capital of France?"], DecodingConfig(temperature=0, max_new_tokens=12))[0]
    local = HFBackend.load("smollm2-135m", device="cpu").generate(
        ["What is the capital of France?"], DecodingConfig(temperature=0, max_new_tokens=12))[0]
    assert "Paris" in answer
    assert answer == remote.text == local.text


@pytest.mark.slow
def test_cli_generate_and_decode_tune_through_the_server(tiny_url, tiny_backend, tmp_path):
    import json

    from typer.testing import CliRunner

    from staytuned.cli import build_app
    from staytuned.decoding.hf_backend import HFBackend
    from staytuned.decoding.tune import DecodeTuneSpec, run_decode_tune

    runner = CliRunner()
    res = runner.invoke(build_app(), ["generate", "--backend", "http", "--base-url", tiny_url,
                                      "--prompt", "Hello", "--temperature", "0", "--max-new-tokens", "6",
                                      "--json", "-", "-q"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    local = tiny_backend.generate(["Hello"], DecodingConfig(temperature=0, max_new_tokens=6))[0]
    assert payload["model"] == "tiny-llama" and payload["generations"][0]["text"] == local.text

    # Through the server's chat endpoint a task is decoded exactly like local generation with
    # the same chat template, and a decoding study runs on it.
    from staytuned.decoding.objective import score_config
    from staytuned.tasks import load_task

    task = load_task("sst2")
    rows = task.eval_rows("validation", size=3, seed=0)
    cfg = DecodingConfig(temperature=0, max_new_tokens=4)
    chat_local = HFBackend(tiny_backend.model, tiny_backend.tokenizer, model_name="tiny-llama", chat=True)
    remote = score_config(HTTPBackend(tiny_url, chat=True), task, rows, cfg, keep_generations=True)
    local_score = score_config(chat_local, task, rows, cfg, keep_generations=True)
    assert [g.text for g in remote.samples[0].generations] == [g.text for g in local_score.samples[0].generations]
    assert remote.samples[0].output_tokens == local_score.samples[0].output_tokens

    space = {"kind": "decode", "params": {"do_sample": {"type": "categorical", "choices": [False, True]}}}
    spec = DecodeTuneSpec(task="sst2", model=None, storage=f"sqlite:///{tmp_path / 's.db'}",
                          study_name="http", space=space, strategy="grid", n_trials=2, samples=2,
                          eval_size=3, overrides={"max_new_tokens": 4})
    outcome = run_decode_tune(spec, backend=HTTPBackend(tiny_url, chat=True))
    assert outcome.ran == 2 and sorted(r.estimate.n for r in outcome.rows) == [1, 2]


def test_api_key_is_required_when_set(tiny_backend):
    from fastapi.testclient import TestClient

    from staytuned.decoding.server import create_app

    client = TestClient(create_app(tiny_backend, model_name="m", api_key="sekrit"))
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/v1/models", headers={"Authorization": "Bearer sekrit"})
    assert ok.status_code == 200 and ok.json()["data"][0]["id"] == "m"
    assert client.get("/health").status_code == 200  # health checks need no key
