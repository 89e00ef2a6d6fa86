"""The operator console page (``/console``): the static files, ready to mount on a hub server.

The console is a browser application built only on the hub's HTTP API (docs/http-api.md):
it asks for the API key, keeps it in the tab's ``sessionStorage`` and sends it as
``Authorization: Bearer`` with every call, so the page itself holds no data and no secret:
everything it shows is refused without the key. Once a second it reads ``GET /api/nodes``
(every node's counters, in Redis mode too) and ``GET /api/channels``, and draws the figures
as SVG charts; it publishes with ``POST /api/publish`` and disconnects with
``POST /api/disconnect``. See docs/console.md.

Files served on the hub's port:

* ``/console`` — the page;
* ``/console/console.js``, ``/console/console.css`` — the application, and
  ``/console/ui.css``, the palette, top bar and status pill every demo page shares (versioned
  URLs, cached for a year; the page is revalidated), and ``/console/wshub.js``, which every
  page gets (the console does not use it).

:class:`ConsoleApp` answers these paths and returns ``None`` for every other request, a
``process_request`` handler for the ``http_handlers`` of
:func:`~wshub.hub.server.start_hub`. Caching and the Content-Security-Policy are those of
every demo page (:mod:`wshub.apps.static`).
"""

from __future__ import annotations

from wshub.apps.static import StaticApp, StaticFile, page_routes

__all__ = ["ConsoleApp", "console_routes"]

_PACKAGE = "wshub.apps.console"


def console_routes(*, path: str = "/console", ws_path: str = "/ws") -> dict[str, StaticFile]:
    """Build the console's files, keyed by the request path they answer.

    Args:
        path: where the page is served; its assets are under ``path + "/"``.
        ws_path: the hub's WebSocket path (written into the page like every demo page's).

    Returns:
        ``{path: StaticFile}`` for the page, ``console.js``, ``console.css``, ``ui.css`` and
        ``wshub.js``.

    Raises:
        ValueError: ``path`` or ``ws_path`` is not an absolute path that fits in HTML.
    """
    return page_routes(
        _PACKAGE,
        page="console.html",
        page_path=path,
        prefix=path.rstrip("/") + "/",
        assets={"%CONSOLE_JS%": "console.js", "%CONSOLE_CSS%": "console.css"},
        ws_path=ws_path,
        shared={"%UI_CSS%": "ui.css"},
    )


class ConsoleApp(StaticApp):
    """Serves the console's files; every other request goes on to the hub (the API too)."""

    def __init__(self, *, path: str = "/console", ws_path: str = "/ws") -> None:
        """Read the files once.

        Args:
            path: where the page is served (see :func:`console_routes`).
            ws_path: the hub's WebSocket path.

        Raises:
            ValueError: ``path`` or ``ws_path`` is not an absolute path.
        """
        super().__init__(console_routes(path=path, ws_path=ws_path))
