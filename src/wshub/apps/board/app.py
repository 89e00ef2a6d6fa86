"""The shared whiteboard page (``/board``): its files, ready to mount on a hub server.

The board is a browser application (``static/board.js``) that talks to the hub with
``wshub.js`` over ``wshub.v1``: every stroke, undo and clear is a publication in the channel
``board:<name>``, cursors are ephemeral publications, and a newcomer rebuilds the board from
the channel's history, starting at the latest *snapshot* publication (docs/board.md). The
server side only serves six files on the hub's port:

* ``/board`` — the page (``/board?name=NAME`` picks the board), with the hub's WebSocket
  path and the two numbers the snapshot rules depend on written into it;
* ``/board/board.js``, ``/board/board.css`` — the application;
* ``/board/ui.css``, ``/board/ui.js`` — the look and connection display every page shares;
* ``/board/wshub.js`` — the hub's browser client.

:class:`BoardApp` answers these paths and returns ``None`` for every other request, like
:class:`wshub.apps.chat.ChatApp`.
"""

from __future__ import annotations

from wshub.apps.static import StaticApp, StaticFile, page_routes

__all__ = ["BoardApp", "board_routes"]

_PACKAGE = "wshub.apps.board"

#: The demo registry's ``board`` namespace keeps 1000 publications (wshub.hub.channels).
DEFAULT_HISTORY_SIZE = 1000
#: The hub's default ``HubLimits.max_publication_size``, in bytes.
DEFAULT_MAX_PUBLICATION_SIZE = 65536
#: The smallest publication limit a board can work with: one stroke must fit.
_MIN_PUBLICATION_SIZE = 4096


def board_routes(
    *,
    path: str = "/board",
    ws_path: str = "/ws",
    history_size: int = DEFAULT_HISTORY_SIZE,
    max_publication_size: int = DEFAULT_MAX_PUBLICATION_SIZE,
) -> dict[str, StaticFile]:
    """Build the board's files, keyed by the request path they answer.

    Args:
        path: where the page lives (no trailing ``/``); its assets are under ``path + "/"``.
        ws_path: the hub's WebSocket path on the same host and port.
        history_size: publications the ``board`` namespace keeps per channel
            (``NamespaceOptions.history_size``). The page posts a snapshot every quarter of
            it, so that a newcomer always finds one in the history.
        max_publication_size: the hub's ``HubLimits.max_publication_size`` in bytes. The page
            refuses a stroke that would make the board's snapshot larger than this.

    Returns:
        ``{path: StaticFile}`` for the page, ``board.js``, ``board.css``, ``ui.css``,
        ``ui.js`` and ``wshub.js``.

    Raises:
        ValueError: a path is not absolute, ``history_size`` is below 4 or
            ``max_publication_size`` below 4096.
    """
    if path.endswith("/"):
        raise ValueError(f"path must not end with '/': {path!r}")
    if history_size < 4:
        raise ValueError(f"history_size must be at least 4: {history_size}")
    if max_publication_size < _MIN_PUBLICATION_SIZE:
        raise ValueError(
            f"max_publication_size must be at least {_MIN_PUBLICATION_SIZE}: {max_publication_size}"
        )
    routes = page_routes(
        _PACKAGE,
        page="board.html",
        page_path=path,
        prefix=path + "/",
        assets={"%BOARD_JS%": "board.js", "%BOARD_CSS%": "board.css"},
        ws_path=ws_path,
        shared={"%UI_CSS%": "ui.css", "wshub-ui": "ui.js"},
    )
    # The numbers the page's snapshot rules depend on; the CSP (the import map's hash) and
    # the other headers stay those page_routes gave the page.
    page = routes[path]
    html = page.body.decode()
    html = html.replace("%HISTORY_SIZE%", str(history_size))
    html = html.replace("%MAX_PUBLICATION_SIZE%", str(max_publication_size))
    routes[path] = StaticFile.build(html.encode(), page.content_type, page.headers)
    return routes


class BoardApp(StaticApp):
    """Serves the board's files; every other request goes on to the hub.

    Mount it like the chat: ``start_hub(..., http_handlers=[BoardApp(ws_path="/ws")])``.
    """

    def __init__(
        self,
        *,
        path: str = "/board",
        ws_path: str = "/ws",
        history_size: int = DEFAULT_HISTORY_SIZE,
        max_publication_size: int = DEFAULT_MAX_PUBLICATION_SIZE,
    ) -> None:
        """Read the files once; the arguments are those of :func:`board_routes`.

        Raises:
            ValueError: see :func:`board_routes`.
        """
        super().__init__(
            board_routes(
                path=path,
                ws_path=ws_path,
                history_size=history_size,
                max_publication_size=max_publication_size,
            )
        )
