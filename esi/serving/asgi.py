"""ASGI middleware of the service: refuse request bodies above the configured limit before they are read."""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Any

# A multipart part's file name; BentoML keeps only its base name, so tricks are refused here, where they are seen.
_FILENAME = re.compile(rb'filename="([^"\r\n]*)"')
_TRICK = re.compile(r'(^|[\\/])\.\.([\\/]|$)|^[\\/~]|^[A-Za-z]:|[\\/\x00]')


def _too_large_message(limit: int, size: int | None = None) -> str:
    got = f" ({size / 2**20:.1f} MiB sent)" if size is not None else ""
    return (f"request body is larger than the limit of {limit / 2**20:g} MiB{got}; split the batch or raise "
            "ESI_SERVE_MAX_REQUEST_MB")


class BodyLimitMiddleware:
    """413 for a body whose Content-Length, or streamed size, exceeds ``max_bytes``.

    A declared length is refused before any byte is read; a chunked body is counted as it streams and the
    request fails with a 413 as soon as it crosses the limit (through BentoML's own error handler).
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = None
        for key, value in scope.get("headers") or ():
            if key.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        if declared is not None and declared > self.max_bytes:
            await _send_json(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                             {"error": _too_large_message(self.max_bytes, declared)})
            return
        seen = 0
        limit = self.max_bytes
        content_type = dict(scope.get("headers") or ()).get(b"content-type", b"")
        multipart = content_type.lower().startswith(b"multipart/")
        tail = b""

        async def counted_receive() -> dict:
            nonlocal seen
            message = await receive()
            nonlocal tail
            if message.get("type") == "http.request":
                body = message.get("body", b"")
                seen += len(body)
                from bentoml.exceptions import BentoMLException

                if seen > limit:
                    raise BentoMLException(_too_large_message(limit), error_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
                if multipart:
                    chunk = tail + body
                    for match in _FILENAME.finditer(chunk):
                        name = match.group(1).decode("utf-8", "replace")
                        if _TRICK.search(name):
                            raise BentoMLException(
                                f"field 'files': upload name {name!r} contains a path (absolute, '..' or folders); "
                                "send plain file names such as A0001.hea, or a .zip", error_code=HTTPStatus.BAD_REQUEST)
                    tail = chunk[-512:]
            return message

        await self.app(scope, counted_receive, send)


async def _send_json(send: Any, status: HTTPStatus, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": int(status),
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": data})
