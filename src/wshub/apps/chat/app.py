"""The chat room page: the static files of the demo chat, ready to mount on a hub server.

The chat is a browser application that talks to the hub with ``wshub.js`` over the
``wshub.v1`` protocol; the server side only has to serve a few files on the hub's port:

* ``/`` — the page, with the hub's WebSocket path written into it;
* ``/chat.js``, ``/chat.css`` — the application;
* ``/ui.css``, ``/ui.js`` — the look and connection display every page shares
  (:mod:`wshub.apps.shared`);
* ``/wshub.js`` — the hub's browser client (``wshub/hub/js/wshub.js``).

:class:`ChatApp` answers these paths and returns ``None`` for every other request, so that it
can sit in front of the hub's own HTTP routes and the WebSocket upgrade. It is a
``process_request`` function (``app(connection, request)``) for :func:`wshub.serve`, and
:meth:`ChatApp.handle` takes the request alone for servers that route plain HTTP themselves.
Caching and the Content-Security-Policy are those of every demo page
(:mod:`wshub.apps.static`).
"""

from __future__ import annotations

from wshub.apps.static import StaticApp, StaticFile, page_routes
from wshub.hub.channels import NamespaceOptions, SlowConsumerPolicy
from wshub.hub.config import AuthConfig, HubConfig, Namespace, SQLiteStorage

__all__ = [
    "DEMO_ANONYMOUS_PERMISSIONS",
    "DEMO_NAMESPACES",
    "ChatApp",
    "StaticFile",
    "chat_routes",
    "demo_config",
]

_DAY = 24 * 3600.0

#: The namespaces of the demo (``wshub serve`` with no config file; table in docs/hub.md).
DEMO_NAMESPACES = (
    Namespace(
        name="chat",
        options=NamespaceOptions(
            history_size=100, history_ttl=_DAY, presence=True, join_leave=True
        ),
    ),
    # A ticker only needs the last price on subscribe; a slow client wants the newest price,
    # not a backlog, and the data is worthless after a restart.
    Namespace(
        name="ticker",
        options=NamespaceOptions(
            history_size=1,
            persistent=False,
            publish="none",
            slow_consumer=SlowConsumerPolicy.LATEST,
            queue_size=16,
        ),
    ),
    # The board's state is the replay of its operations, so keep many and a long time.
    Namespace(
        name="board",
        options=NamespaceOptions(
            history_size=1000,
            history_ttl=7 * _DAY,
            presence=True,
            join_leave=True,
            queue_size=1024,
        ),
    ),
)

#: What the demo's anonymous users may do: chat and draw, watch tickers.
DEMO_ANONYMOUS_PERMISSIONS = ("chat:*:spr", "ticker:*:s", "board:*:spr")


def demo_config() -> HubConfig:
    """The demo that ``wshub serve`` runs without a config file: the chat's namespaces,
    anonymous users allowed with :data:`DEMO_ANONYMOUS_PERMISSIONS`, history in SQLite
    under ``./.wshub-data``. (The command turns anonymous users off when it is given a
    token secret, unless ``--allow-anonymous`` says otherwise.)"""
    return HubConfig(
        auth=AuthConfig(allow_anonymous=True, anonymous_permissions=DEMO_ANONYMOUS_PERMISSIONS),
        storage=SQLiteStorage(data_dir=".wshub-data"),
        namespaces=DEMO_NAMESPACES,
    )


_PACKAGE = "wshub.apps.chat"


def chat_routes(*, prefix: str = "/", ws_path: str = "/ws") -> dict[str, StaticFile]:
    """Build the chat's files, keyed by the request path they answer.

    Args:
        prefix: where the chat lives, with a leading and trailing ``/`` (``"/"`` or
            ``"/chat/"``); the page is served at the prefix itself.
        ws_path: the hub's WebSocket path on the same host and port. The page connects to
            ``ws(s)://<its own host><ws_path>``.

    Returns:
        ``{path: StaticFile}`` for the page, ``chat.js``, ``chat.css``, ``ui.css``,
        ``ui.js`` and ``wshub.js``.

    Raises:
        ValueError: ``prefix`` or ``ws_path`` is not an absolute path.
    """
    return page_routes(
        _PACKAGE,
        page="index.html",
        page_path=prefix,
        prefix=prefix,
        assets={"%CHAT_JS%": "chat.js", "%CHAT_CSS%": "chat.css"},
        ws_path=ws_path,
        shared={"%UI_CSS%": "ui.css", "wshub-ui": "ui.js"},
    )


class ChatApp(StaticApp):
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
        super().__init__(chat_routes(prefix=prefix, ws_path=ws_path))
