"""Serving an app's page and assets from the hub's port: what every demo page shares.

An app is one HTML page plus a few assets read from its package's ``static/`` folder and the
hub's browser client ``wshub.js``. :func:`page_routes` reads them once and returns them keyed
by request path; :class:`StaticApp` answers those paths and returns ``None`` for every other
request, so that it can sit in front of the hub's own HTTP routes and the WebSocket upgrade
(a ``process_request`` function, ``app(connection, request)``, for :func:`wshub.serve` and the
``http_handlers`` of :func:`wshub.hub.server.start_hub`).

Caching: the page is always revalidated (``no-cache`` + ``ETag``). It refers to its assets
with a ``?v=<content hash>`` query; a request carrying the current hash is cached for a year
as ``immutable``, so that a new version of the code is picked up on the next page load and
an unchanged one is never fetched again.

Security: the page is sent with a strict Content-Security-Policy (:func:`csp`): its own
origin only, no inline script but the import map (allowed by its hash), no inline style.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from wshub import Request, Response

__all__ = ["StaticApp", "StaticFile", "check_path", "csp", "page_routes"]

#: The package whose ``static/`` folder holds what every page shares.
_SHARED = "wshub.apps.shared"

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
    """One file an app serves.

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


def check_path(name: str, value: str, *, trailing_slash: bool) -> None:
    """Refuse a path that is not absolute or could not be written into HTML unescaped.

    Raises:
        ValueError: ``value`` does not start with ``/`` (or end with one when
            ``trailing_slash``), or has quotes, spaces, ``?``, ``#``, ``<``, ``>`` or
            non-ASCII characters.
    """
    if not value.startswith("/") or (trailing_slash and not value.endswith("/")):
        end = " and end with '/'" if trailing_slash else ""
        raise ValueError(f"{name} must start with '/'{end}: {value!r}")
    if any(c in value for c in "?#\"'<> ") or not value.isascii():
        raise ValueError(f"{name} has characters that do not belong in a path: {value!r}")


def page_routes(
    package: str,
    *,
    page: str,
    page_path: str,
    prefix: str,
    assets: Mapping[str, str],
    ws_path: str,
    shared: Mapping[str, str] | None = None,
) -> dict[str, StaticFile]:
    """Read an app's page and assets, keyed by the request path they answer.

    The page template's markers are replaced: ``%WS_PATH%`` by ``ws_path`` (for a
    ``<meta name="wshub-ws-path">``), ``%IMPORT_MAP%`` by an import map that maps the module
    name ``wshub`` to the versioned URL of ``wshub.js``, and each marker of ``assets`` by
    the versioned URL of its file.

    The look and the connection display that every page shares (palette, top bar, status
    pill, banner) live in ``wshub.apps.shared``'s ``static/`` folder (``ui.css``,
    ``ui.js``); a page takes them with ``shared``.

    Args:
        package: the app's package; its files are in ``static/``.
        page: the template's file name in ``static/``.
        page_path: where the page is served.
        prefix: where the assets are served (``prefix + name``), ``wshub.js`` included.
        assets: ``{marker: file name in static/}`` for the page's scripts and stylesheets.
        ws_path: the hub's WebSocket path on the same host and port.
        shared: files of ``wshub.apps.shared`` the page uses, served like ``assets``:
            ``{"%MARKER%": name}`` for a stylesheet or script written into the page,
            ``{"module-name": name}`` for a module added to the import map.

    Returns:
        ``{path: StaticFile}`` for the page, each asset, each shared file and ``wshub.js``.

    Raises:
        ValueError: ``prefix`` (with a trailing ``/``), ``page_path`` or ``ws_path`` is not
            an absolute path that fits in HTML unescaped.
    """
    check_path("prefix", prefix, trailing_slash=True)
    check_path("page_path", page_path, trailing_slash=False)
    check_path("ws_path", ws_path, trailing_slash=False)
    shared = shared or {}
    sources = [(package, "static", name) for name in assets.values()]
    sources += [(_SHARED, "static", name) for name in shared.values()]
    sources.append(("wshub.hub", "js", "wshub.js"))
    files = {
        source[-1]: StaticFile.build(_read(*source), _content_type(source[-1]))
        for source in sources
    }

    def url(name: str) -> str:
        return f"{prefix}{name}?v={files[name].version}"

    # The page imports "wshub" (and shared modules) through an import map, so that its
    # scripts need not know where the modules are served nor their versions.
    modules = {"wshub": "wshub.js"}
    modules.update({key: name for key, name in shared.items() if not key.startswith("%")})
    imports = {key: url(name) for key, name in modules.items()}
    import_map = json.dumps({"imports": imports}, separators=(",", ":"))
    text = _read(package, "static", page).decode()
    markers = {"%WS_PATH%": ws_path, "%IMPORT_MAP%": import_map}
    markers.update({marker: url(name) for marker, name in assets.items()})
    markers.update({key: url(name) for key, name in shared.items() if key.startswith("%")})
    for marker, value in markers.items():
        text = text.replace(marker, value)
    page_headers = (
        ("Content-Security-Policy", csp(import_map)),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
    )
    routes = {page_path: StaticFile.build(text.encode(), _content_type(".html"), page_headers)}
    routes.update({prefix + name: asset for name, asset in files.items()})
    return routes


class StaticApp:
    """Serves a fixed set of files; every other request goes on to the hub.

    Attributes:
        routes: ``{request path: StaticFile}`` (see :func:`page_routes`).
    """

    def __init__(self, routes: Mapping[str, StaticFile]) -> None:
        """Serve ``routes``."""
        self.routes = dict(routes)

    def __call__(self, connection: Any, request: Request) -> Response | None:
        """``process_request``-compatible entry point (the connection is not needed)."""
        return self.handle(request)

    def handle(self, request: Request) -> Response | None:
        """Answer a request for one of the files, or return ``None``.

        A WebSocket upgrade is never answered here, even on a file's path, so that the hub
        can share a path with a page. ``GET`` and ``HEAD`` are served; other methods on a
        file's path get 405.
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


def csp(inline_script: str) -> str:
    """A page's Content-Security-Policy: its own origin only.

    Scripts, styles and the WebSocket ('self' covers ws: and wss: on the same host in CSP
    Level 3 browsers) come from the hub; the one inline script, the import map, is allowed by
    its hash; icons are inline SVG (``data:``).
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
