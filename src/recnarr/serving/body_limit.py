"""A request-body cap that answers like every other error of the API: 413 with a JSON `detail`.

Starlette's own limit (FastAPI's `max_body_size`) answers plain text, which the OpenAPI contract does
not describe. A declared Content-Length over the cap is refused before the body is read; a chunked
body is counted as it arrives, and crossing the cap raises an HTTPException from `receive`, which
FastAPI's body reading passes on to its JSON error handler.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app, self.max_body_bytes = app, max_body_bytes

    @property
    def detail(self) -> str:
        return f"request body over the limit of {self.max_body_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            body = json.dumps({"detail": self.detail}).encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise HTTPException(413, self.detail)
            return message

        await self.app(scope, counted, send)
