"""Real servers for the HTTP tests: `staytuned serve` in a subprocess, and tiny stdlib servers
that misbehave on purpose (never answer, answer 503 first, answer slowly)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def staytuned_server(model: str, *, startup_s: float = 300.0, extra: list[str] | None = None
                     ) -> Iterator[str]:
    """Start `staytuned serve --model MODEL` on a free port; yield its base URL (…/v1)."""
    import httpx

    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"staytuned-serve-{port}.log"
    cmd = [sys.executable, "-c", "from staytuned.cli import main; main()", "serve",
           "--model", model, "--port", str(port), "--device", "cpu", *(extra or [])]
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Recorder:
    """What a scripted server saw: connections, requests, the most requests in flight at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict] = []


@contextlib.contextmanager
def scripted_server(statuses: list[int] | None = None, *, delay: float = 0.0) -> Iterator[tuple[str, Recorder]]:
    """An OpenAI-shaped server: answers the i-th request with ``statuses[i]`` (then 200), after
    ``delay`` seconds; 200 answers echo a completion."""
    rec = Recorder()
    plan = list(statuses or [])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            with rec.lock:
                index = rec.requests
                rec.requests += 1
                rec.in_flight += 1
                rec.max_in_flight = max(rec.max_in_flight, rec.in_flight)
                rec.bodies.append(body)
            try:
                time.sleep(delay)
                status = plan[index] if index < len(plan) else 200
                if status == 200:
                    payload = {"choices": [{"text": f"echo:{body.get('prompt')}", "finish_reason": "stop"}],
                               "usage": {"prompt_tokens": 1, "completion_tokens": 2}}
                else:
                    payload = {"error": {"message": f"scripted {status}", "type": "x"}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                if status == 429:
                    self.send_header("retry-after", "0")
                self.end_headers()
                self.wfile.write(data)
            finally:
                with rec.lock:
                    rec.in_flight -= 1

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    try:
        with _in_thread(server.serve_forever, stop=server.shutdown):
            yield f"http://127.0.0.1:{server.server_address[1]}/v1", rec
    finally:
        server.server_close()


@contextlib.contextmanager
def silent_server() -> Iterator[tuple[str, list[int]]]:
    """Accepts connections and reads requests but never answers (a server that is too slow)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted: list[int] = []
    held: list[socket.socket] = []
    stop = threading.Event()

    def loop() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            accepted.append(1)
            held.append(conn)  # keep it open, say nothing

    try:
        with _in_thread(loop, stop=stop.set):
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", accepted
    finally:
        for c in held:
            c.close()
        sock.close()


@contextlib.contextmanager
def _in_thread(loop: Callable[[], None], *, stop: Callable[[], None]) -> Iterator[None]:
    """Run a server's ``loop`` in a daemon thread for the block; then ``stop`` it and wait."""
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop()
        thread.join()
