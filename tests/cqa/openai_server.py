"""A small OpenAI-compatible HTTP server for tests (standard library only, 127.0.0.1, a thread).

Serves ``POST /v1/chat/completions`` and ``POST /v1/embeddings`` the way the real API does (JSON shapes,
usage, error bodies), so the real ``openai`` and ``langchain-openai`` clients run against it unchanged.

- Chat: the answer is built from the request (it quotes the condition lines of the user message), so a test
  can check that the prompt reached the server; ``usage`` counts whitespace tokens.
- Embeddings: deterministic hashed bag-of-words vectors (unit length), so similar texts are near.
- Modes: ``api_key`` (any other bearer token -> 401), ``fail_first`` (the first N requests per path get
  ``fail_status``, e.g. 429 or 503, then success), ``reply`` (fixed chat answer), ``delay_s`` (answer time,
  to observe concurrency: ``max_in_flight``). ``requests`` counts calls.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

EMBED_DIM = 64


def hashed_embedding(text: str, dim: int = EMBED_DIM) -> list[float]:
    """Bag of lower-case words hashed into ``dim`` buckets, L2-normalised."""
    vec = [0.0] * dim
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        h = int.from_bytes(hashlib.md5(word.encode()).digest()[:4], "little")
        vec[h % dim] += 1.0 if (h >> 31) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


class FakeOpenAI:
    """The server state and its thread. Use as a context manager; ``base_url`` ends in /v1."""

    def __init__(self, *, api_key: str = "test-key", fail_first: int = 0, fail_status: int = 429,
                 reply: str | None = None, delay_s: float = 0.0) -> None:
        self.api_key = api_key
        self.delay_s = delay_s
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.reply = reply
        self.requests: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self._failed: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- responses ---------------------------------------------------------------------------------------
    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages", [])
        user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
        if self.reply is not None:
            answer = self.reply
        else:
            conds = [ln[2:].split(" [")[0] for ln in str(user).splitlines() if ln.startswith("- ")]
            answer = ("Waveform features of " + ", ".join(conds) + " as described in the passages."
                      if conds else "No conditions were given.")
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        completion_tokens = len(answer.split())
        return {
            "id": f"chatcmpl-{self.requests['/v1/chat/completions']}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", "test-model"),
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": answer}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body.get("input", [])
        if isinstance(inputs, str):
            inputs = [inputs]
        data = [{"object": "embedding", "index": i, "embedding": hashed_embedding(str(t))}
                for i, t in enumerate(inputs)]
        n = sum(len(str(t).split()) for t in inputs)
        return {"object": "list", "data": data, "model": body.get("model", "test-embed"),
                "usage": {"prompt_tokens": n, "total_tokens": n}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: dict[str, Any],
                      headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def _error(self, status: int, message: str, kind: str, code: str | None = None) -> None:
                headers = {"Retry-After": "0"} if status == 429 else None
                self._send(status, {"error": {"message": message, "type": kind, "param": None, "code": code}},
                           headers)

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                path = self.path.split("?")[0]
                with state._lock:
                    state.requests[path] += 1
                    state.bodies.append({"path": path, **body})
                    fail = state._failed[path] < state.fail_first
                    if fail:
                        state._failed[path] += 1
                if self.headers.get("Authorization") != f"Bearer {state.api_key}":
                    self._error(401, "Incorrect API key provided.", "invalid_request_error",
                                "invalid_api_key")
                    return
                if fail:
                    kind = "rate_limit_exceeded" if state.fail_status == 429 else "server_error"
                    self._error(state.fail_status, f"simulated {state.fail_status}", kind)
                    return
                if path == "/v1/chat/completions":
                    with state._lock:
                        state.in_flight += 1
                        state.max_in_flight = max(state.max_in_flight, state.in_flight)
                    time.sleep(state.delay_s)
                    with state._lock:
                        state.in_flight -= 1
                    self._send(200, state._chat(body))
                elif path == "/v1/embeddings":
                    self._send(200, state._embeddings(body))
                else:
                    self._error(404, f"unknown path {path}", "invalid_request_error")

        return Handler
