"""A loopback stand-in for the KFP v2beta1 REST calls kfp.Client makes to submit and schedule runs.

healthz, experiments (lookup by name, create), runs (create), recurringruns (create): the request bodies are
recorded so tests can check what a real KFP API server would receive.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse


class KfpServer:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.experiments: dict[str, str] = {}
        self.runs: dict[str, dict] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                server.requests.append(("GET", self.path, None))
                path = urlparse(self.path).path
                if path == "/apis/v2beta1/healthz":
                    return self._send({"multi_user": False})
                if path == "/apis/v2beta1/experiments":
                    return self._send({"experiments": [{"experiment_id": i, "display_name": n}
                                                       for n, i in server.experiments.items() if n in self.path]})
                if path.startswith("/apis/v2beta1/runs/") and path.rsplit("/", 1)[1] in server.runs:
                    return self._send(server.runs[path.rsplit("/", 1)[1]])
                self._send({})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                path = urlparse(self.path).path
                server.requests.append(("POST", path, body))
                if path == "/apis/v2beta1/experiments":
                    eid = f"exp-{len(server.experiments) + 1}"
                    server.experiments[body["display_name"]] = eid
                    return self._send({"experiment_id": eid, "display_name": body["display_name"]})
                if path == "/apis/v2beta1/runs":
                    run = {"run_id": f"run-{len(server.runs) + 1}", "display_name": body["display_name"],
                           "experiment_id": body.get("experiment_id"), "state": "PENDING",
                           "created_at": "2026-12-01T02:00:00Z"}
                    server.runs[run["run_id"]] = run
                    return self._send(run)
                if path == "/apis/v2beta1/recurringruns":
                    return self._send({"recurring_run_id": "rr-1", "display_name": body["display_name"]})
                self.send_error(404)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> KfpServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def posted(self, path: str) -> list[dict]:
        return [b for m, p, b in self.requests if m == "POST" and p == path]
