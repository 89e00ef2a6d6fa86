"""The chat room page: the static files of the demo chat, ready to mount on a hub server.

The chat is a browser application that talks to the hub with ``wshub.js`` over the
``wshub.v1`` protocol; the server side only has to serve four files on the hub's port:

* ``/`` — the page, with the hub's WebSocket path written into it;
* ``/chat.js``, ``/chat.css`` — the application;
* ``/wshub.js`` — the hub's browser client (``wshub/hub/js/wshub.js``).

:class:`ChatApp` answers these paths and returns ``None`` for every other request, so that it
can sit in front of the hub's own HTTP routes and the WebSocket upgrade. It is a
``process_request`` function (``app(connection, request)``) for :func:`wshub.serve`, and
:meth:`ChatApp.handle` takes the request alone for servers that route plain HTTP themselves.

Caching: the page is always revalidated (``no-cache`` + ``ETag``). It refers to the scripts
and the stylesheet with a ``?v=<content hash>`` query; a request carrying the current hash is
cached for a year as ``immutable``, so that a new version of the code is picked up on the next
page load and an unchanged one is never fetched again.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from wshub import Request, Response

__all__ = ["ChatApp", "StaticFile", "chat_routes"]

_PACKAGE = "wshub.apps.chat"

#: Cache lifetime of a versioned asset: one year, the longest value browsers honour.
_IMMUTABLE = "public, max-age=31536000, immutable"
#: Unversioned responses: cache, but ask the server (a cheap 304) before each use.
_REVALIDATE = "no-cache"

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    """One file the chat serves.

    Attributes:
        body: the content.
        content_type: the ``Content-Type`` value.
        etag: a strong entity tag derived from the content (quoted).
        version: a short content hash for ``?v=`` cache busting.
        headers: extra response headers (the page's Content-Security-Policy).
    """

    body: bytes
    content_type: str
    etag: str
    version: str
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def build(
        cls, body: bytes, content_type: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> StaticFile:
        """Build the entry for ``body``, hashing it once for the ETag and the version."""
        digest = hashlib.sha256(body).hexdigest()
        return cls(body, content_type, f'"{digest[:32]}"', digest[:12], headers)


def _read(package: str, *parts: str) -> bytes:
    # importlib.resources works from a wheel, a zip or a source checkout alike.
    return resources.files(package).joinpath(*parts).read_bytes()


def _content_type(name: str) -> str:
    return _CONTENT_TYPES[name[name.rfind(".") :]]


def _check_path(name: str, value: str, *, trailing_slash: bool) -> None:
    if not value.startswith("/") or (trailing_slash and not value.endswith("/")):
        end = " and end with '/'" if trailing_slash else ""
        raise ValueError(f"{name} must start with '/'{end}: {value!r}")
    if any(c in value for c in "?#\"'<> ") or not value.isascii():
        raise ValueError(f"{name} has characters that do not belong in a path: {value!r}")


def chat_routes(*, prefix: str = "/", ws_path: str = "/ws") -> dict[str, StaticFile]:
    """Build the chat's files, keyed by the request path they answer.

    Args:
        prefix: where the chat lives, with a leading and trailing ``/`` (``"/"`` or
            ``"/chat/"``); the page is served at the prefix itself.
        ws_path: the hub's WebSocket path on the same host and port. The page connects to
            ``ws(s)://<its own host><ws_path>``.

    Returns:
        ``{path: StaticFile}`` for the page, ``chat.js``, ``chat.css`` and ``wshub.js``.

    Raises:
        ValueError: ``prefix`` or ``ws_path`` is not an absolute path.
    """
    _check_path("prefix", prefix, trailing_slash=True)
    _check_path("ws_path", ws_path, trailing_slash=False)
    assets = {
        "chat.js": StaticFile.build(_read(_PACKAGE, "static", "chat.js"), _content_type(".js")),
        "chat.css": StaticFile.build(_read(_PACKAGE, "static", "chat.css"), _content_type(".css")),
        "wshub.js": StaticFile.build(_read("wshub.hub", "js", "wshub.js"), _content_type(".js")),
    }

    def url(name: str) -> str:
        return f"{prefix}{name}?v={assets[name].version}"

    # The page imports "wshub" through an import map, so that chat.js need not know where the
    # client is served nor its version.
    import_map = json.dumps({"imports": {"wshub": url("wshub.js")}}, separators=(",", ":"))
    page = _read(_PACKAGE, "static", "index.html").decode()
    for marker, value in (
        ("%WS_PATH%", ws_path),
        ("%IMPORT_MAP%", import_map),
        ("%CHAT_JS%", url("chat.js")),
        ("%CHAT_CSS%", url("chat.css")),
    ):
        page = page.replace(marker, value)
    page_headers = (
        ("Content-Security-Policy", _csp(import_map)),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
    )
    routes = {prefix: StaticFile.build(page.encode(), _content_type(".html"), page_headers)}
    routes.update({prefix + name: asset for name, asset in assets.items()})
    return routes


class ChatApp:
    """Serves the chat's files; every other request goes on to the hub.

    Use it as the ``process_request`` of :func:`wshub.serve`, or call :meth:`handle` from
    the hub server's own request routing::

        app = ChatApp(ws_path="/ws")
        response = app.handle(request)   # None: not a chat file
    """

    def __init__(self, *, prefix: str = "/", ws_path: str = "/ws") -> None:
        """Read the files once.

        Args:
            prefix: where the chat lives (see :func:`chat_routes`).
            ws_path: the hub's WebSocket path (see :func:`chat_routes`).

        Raises:
            ValueError: ``prefix`` or ``ws_path`` is not an absolute path.
        """
        self.routes = chat_routes(prefix=prefix, ws_path=ws_path)

    def __call__(self, connection: Any, request: Request) -> Response | None:
        """``process_request``-compatible entry point (the connection is not needed)."""
        return self.handle(request)

    def handle(self, request: Request) -> Response | None:
        """Answer a request for one of the chat's files, or return ``None``.

        A WebSocket upgrade is never answered here, even on a chat path, so that the hub can
        share a path with the page. ``GET`` and ``HEAD`` are served; other methods on a chat
        path get 405.
        """
        path, _, query = request.path.partition("?")
        static = self.routes.get(path)
        if static is None or "upgrade" in (request.headers.get("Connection") or "").lower():
            return None
        if request.method not in ("GET", "HEAD"):
            return Response.text(405, "Method Not Allowed\n", [("Allow", "GET, HEAD")])
        versioned = f"v={static.version}" in query.split("&")
        headers = [
            ("Content-Type", static.content_type),
            ("Cache-Control", _IMMUTABLE if versioned else _REVALIDATE),
            ("ETag", static.etag),
            ("X-Content-Type-Options", "nosniff"),
            *static.headers,
        ]
        if static.etag in _etags(request.headers.get("If-None-Match") or ""):
            return Response(304, headers=headers)
        body = static.body if request.method == "GET" else b""
        headers.append(("Content-Length", str(len(static.body))))
        return Response(200, headers=headers, body=body)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


def _csp(inline_script: str) -> str:
    """The page's Content-Security-Policy: its own origin only.

    Scripts, styles and the WebSocket ('self' covers ws: and wss: on the same host in CSP
    Level 3 browsers) come from the hub; the one inline script, the import map, is allowed by
    its hash; the icon is an inline SVG.
    """
    digest = base64.b64encode(hashlib.sha256(inline_script.encode()).digest()).decode()
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src 'self' 'sha256-{digest}'",
            "style-src 'self'",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
