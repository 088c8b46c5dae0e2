"""A loopback stand-in for the few Kubernetes API calls the launcher makes (tests/pipeline/test_kfp_launcher.py).

It speaks the real REST paths and JSON bodies of the API server for: create/get/delete a namespaced custom object
(PyTorchJob, TrainJob), list pods by label selector, read a pod's log. A scenario decides how the job's
status.conditions evolve over successive GETs.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

JOB = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
                 r"(?:/(?P<name>[^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods$")
LOG = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<pod>[^/]+)/log$")

DONE = {"pytorchjobs": "Succeeded", "trainjobs": "Complete"}


class KubeState:
    def __init__(self, scenario: str = "success", *, existing: dict | None = None,
                 existing_failed: bool = False) -> None:
        self.scenario = scenario  # success | failure | never | forbidden
        self.jobs: dict[str, dict] = {}
        self.gets = 0
        self.requests: list[tuple[str, str, Any]] = []
        self.deleted: list[str] = []
        self.selectors: list[str] = []
        self.failed: set[str] = set()
        if existing:
            self.jobs[existing["metadata"]["name"]] = existing
            if existing_failed:
                self.failed.add(existing["metadata"]["name"])

    def conditions(self, plural: str) -> list[dict]:
        c = [{"type": "Created", "status": "True", "reason": "JobCreated", "message": "created"}]
        if self.gets >= 2:
            c.append({"type": "Running", "status": "True", "reason": "JobRunning", "message": "running"})
        if self.gets >= 4 and self.scenario == "success":
            c.append({"type": DONE[plural], "status": "True", "reason": "JobSucceeded", "message": "done"})
        if self.gets >= 4 and self.scenario == "failure":
            c.append({"type": "Failed", "status": "True", "reason": "JobFailed", "message": "rank 0 exited 1"})
        return c


def make_handler(state: KubeState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _status(self, code: int, reason: str, message: str) -> None:
            self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                              "reason": reason, "code": code})

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            url = urlparse(self.path)
            state.requests.append(("POST", url.path, body))
            m = JOB.match(url.path)
            if not m or m["name"]:
                return self._status(404, "NotFound", url.path)
            if state.scenario == "forbidden":
                return self._status(403, "Forbidden", f'{m["plural"]}.{m["group"]} is forbidden: User '
                                    '"system:serviceaccount:esi:default" cannot create resource')
            name = body["metadata"]["name"]
            if name in state.jobs:
                return self._status(409, "AlreadyExists", f"{m['plural']} {name!r} already exists")
            state.jobs[name] = body
            self._send(201, body)

        def do_GET(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            query = parse_qs(url.query)
            state.requests.append(("GET", url.path, query))
            if m := JOB.match(url.path):
                job = state.jobs.get(m["name"] or "")
                if job is None:
                    return self._status(404, "NotFound", f"{m['plural']} {m['name']!r} not found")
                if m["name"] in state.failed:  # an earlier run's job that failed
                    return self._send(200, {**job, "status": {"conditions": [
                        {"type": "Failed", "status": "True", "reason": "JobFailed", "message": "old failure"}]}})
                state.gets += 1
                return self._send(200, {**job, "status": {"conditions": state.conditions(m["plural"])}})
            if m := PODS.match(url.path):
                state.selectors.extend(query.get("labelSelector", []))
                items = ([{"metadata": {"name": "esi-pretrain-master-0", "namespace": m["ns"]}}]
                         if state.gets >= 2 else [])
                return self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
            if m := LOG.match(url.path):
                lines = [f"epoch {i} loss {1.0 / (i + 1):.3f}" for i in range(state.gets)]
                return self._send(200, "\n".join(lines) + "\n", "text/plain")
            self._status(404, "NotFound", url.path)

        def do_DELETE(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            state.requests.append(("DELETE", url.path, None))
            m = JOB.match(url.path)
            if not m or m["name"] not in state.jobs:
                return self._status(404, "NotFound", url.path)
            state.deleted.append(m["name"])
            state.failed.discard(m["name"])
            del state.jobs[m["name"]]
            self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    return Handler


class KubeServer:
    """Context manager: ``with KubeServer(state) as api_client: ...`` (a kubernetes.client.ApiClient)."""

    def __init__(self, state: KubeState) -> None:
        self.state = state
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Any:
        from kubernetes import client

        self.thread.start()
        cfg = client.Configuration()
        cfg.host = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        return client.ApiClient(cfg)

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
