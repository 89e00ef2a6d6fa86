"""The browser client, ``wshub.js``, served by the hub itself at ``/wshub.js``.

Every hub serves its client, so that a page of one's own (or a page on another origin)
can ``import { HubClient } from "https://hub.example/wshub.js"`` whatever demo apps are
mounted. The file is read once; it is revalidated on each use (``no-cache`` + ``ETag``),
so that a new hub version is picked up at the next page load and an unchanged one costs a
304. The apps serve their own copy under a versioned URL, cached for a year.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

from wshub.protocol.http11 import Request, Response

__all__ = ["CLIENT_PATH", "client_script", "client_source"]

#: Where the hub serves its browser client.
CLIENT_PATH = "/wshub.js"


@functools.cache
def client_source() -> tuple[bytes, str]:
    """The client's source and its strong ETag (quoted), read once."""
    body = resources.files(__name__).joinpath("wshub.js").read_bytes()
    return body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'


def client_script(request: Request) -> Response | None:
    """Answer ``GET``/``HEAD /wshub.js`` (405 for another method), or return ``None``.

    A WebSocket upgrade is never answered here.
    """
    path = request.path.partition("?")[0]
    if path != CLIENT_PATH or "upgrade" in (request.headers.get("Connection") or "").lower():
        return None
    if request.method not in ("GET", "HEAD"):
        return Response.text(405, "Method Not Allowed\n", [("Allow", "GET, HEAD")])
    body, etag = client_source()
    headers = [
        ("Content-Type", "text/javascript; charset=utf-8"),
        ("Cache-Control", "no-cache"),
        ("ETag", etag),
        ("X-Content-Type-Options", "nosniff"),
        # A page on another origin may import it (a module script is fetched with CORS).
        ("Access-Control-Allow-Origin", "*"),
    ]
    given = {
        tag.strip().removeprefix("W/")
        for tag in (request.headers.get("If-None-Match") or "").split(",")
    }
    if etag in given:
        return Response(304, headers=headers)
    headers.append(("Content-Length", str(len(body))))
    return Response(200, headers=headers, body=body if request.method == "GET" else b"")
