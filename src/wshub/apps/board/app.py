"""The shared whiteboard page (``/board``): its files, ready to mount on a hub server.

The board is a browser application (``static/board.js``) that talks to the hub with
``wshub.js`` over ``wshub.v1``: every stroke, undo and clear is a publication in the channel
``board:<name>``, cursors are ephemeral publications, and a newcomer rebuilds the board from
the channel's history, starting at the latest *snapshot* publication (docs/board.md). The
server side only serves four files on the hub's port:

* ``/board`` — the page (``/board?name=NAME`` picks the board), with the hub's WebSocket
  path and the two numbers the snapshot rules depend on written into it;
* ``/board/board.js``, ``/board/board.css`` — the application;
* ``/board/wshub.js`` — the hub's browser client.

:class:`BoardApp` answers these paths and returns ``None`` for every other request, like
:class:`wshub.apps.chat.ChatApp`.
"""

from __future__ import annotations

from wshub.apps.static import StaticApp, StaticFile, check_path, site_routes

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
        ``{path: StaticFile}`` for the page, ``board.js``, ``board.css`` and ``wshub.js``.

    Raises:
        ValueError: a path is not absolute, ``history_size`` is below 4 or
            ``max_publication_size`` below 4096.
    """
    check_path("path", path, trailing_slash=False)
    check_path("ws_path", ws_path, trailing_slash=False)
    if path.endswith("/"):
        raise ValueError(f"path must not end with '/': {path!r}")
    if history_size < 4:
        raise ValueError(f"history_size must be at least 4: {history_size}")
    if max_publication_size < _MIN_PUBLICATION_SIZE:
        raise ValueError(
            f"max_publication_size must be at least {_MIN_PUBLICATION_SIZE}: {max_publication_size}"
        )
    return site_routes(
        _PACKAGE,
        page="board.html",
        page_path=path,
        asset_prefix=path + "/",
        assets=("board.js", "board.css"),
        settings={
            "WS_PATH": ws_path,
            "HISTORY_SIZE": str(history_size),
            "MAX_PUBLICATION_SIZE": str(max_publication_size),
        },
    )


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
