"""The body-limit middleware: 413 before reading a declared oversize body, 413 while streaming, 400 for
multipart file names with paths."""

from __future__ import annotations

import asyncio

import pytest
from bentoml.exceptions import BentoMLException

from esi.serving.asgi import BodyLimitMiddleware


async def _echo_app(scope, receive, send) -> None:  # reads the whole body, as BentoML does
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def _call(headers: list[tuple[bytes, bytes]], chunks: list[bytes], limit: int = 100) -> list[dict]:
    sent: list[dict] = []
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive() -> dict:
        return queue.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": headers}
    asyncio.run(BodyLimitMiddleware(_echo_app, max_bytes=limit)(scope, receive, send))
    return sent


def test_small_body_passes() -> None:
    sent = _call([(b"content-length", b"5")], [b"hello"])
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"5"


def test_declared_oversize_body_is_refused_unread() -> None:
    sent = _call([(b"content-length", b"101")], [b"x" * 101])
    assert sent[0]["status"] == 413 and b"ESI_SERVE_MAX_REQUEST_MB" in sent[1]["body"]


def test_streamed_oversize_body_fails_with_413() -> None:
    with pytest.raises(BentoMLException) as info:
        _call([], [b"x" * 60, b"x" * 60])
    assert info.value.error_code == 413


@pytest.mark.parametrize("name", [b"../../etc/passwd", b"/abs/A0001.hea", b"sub/A0001.hea", b"C:\\x.hea"])
def test_multipart_names_with_paths_are_refused(name: bytes) -> None:
    head = b'--b\r\nContent-Disposition: form-data; name="files"; filename="' + name + b'"\r\n\r\n'
    with pytest.raises(BentoMLException, match="contains a path") as info:
        _call([(b"content-type", b"multipart/form-data; boundary=b")], [head[:20], head[20:] + b"data"], limit=10**6)
    assert info.value.error_code == 400


def test_plain_multipart_names_pass() -> None:
    head = b'--b\r\nContent-Disposition: form-data; name="files"; filename="A0001.hea"\r\n\r\nx'
    assert _call([(b"content-type", b"multipart/form-data; boundary=b")], [head], limit=10**6)[0]["status"] == 200
