"""The live prices page: ``/ticker`` and its assets, ready to mount on a hub server.

Like the chat (:mod:`wshub.apps.chat.app`), the page is a browser application built only on
``wshub.js``; the server side serves four files on the hub's port:

* ``/ticker`` — the page, with the hub's WebSocket path written into it;
* ``/ticker.js``, ``/ticker.css`` — the application;
* ``/ui.css``, ``/ui.js`` — the look and connection display every page shares
  (:mod:`wshub.apps.shared`);
* ``/wshub.js`` — the hub's browser client (the chat serves the same bytes there).

The prices come from a feed (:mod:`wshub.apps.ticker.feed`) that publishes into the hub;
:class:`TickerApp` only serves the page, and :func:`run_feed` runs the demo feed in the
hub's process. Caching and the Content-Security-Policy are those of every demo page
(:mod:`wshub.apps.static`).
"""

from __future__ import annotations

import logging

from wshub.apps.static import StaticApp, StaticFile, page_routes
from wshub.exceptions import HubError
from wshub.hub import Hub

from .feed import HubPublisher, PriceFeed

__all__ = ["TickerApp", "run_feed", "ticker_routes"]

logger = logging.getLogger("wshub.hub")

_PACKAGE = "wshub.apps.ticker"


def ticker_routes(*, prefix: str = "/", ws_path: str = "/ws") -> dict[str, StaticFile]:
    """Build the ticker's files, keyed by the request path they answer.

    Args:
        prefix: where the files live, with a leading and trailing ``/``: the page is
            ``<prefix>ticker``, the assets ``<prefix>ticker.js`` and so on.
        ws_path: the hub's WebSocket path on the same host and port.

    Returns:
        ``{path: StaticFile}`` for the page, ``ticker.js``, ``ticker.css``, ``ui.css``,
        ``ui.js`` and ``wshub.js``.

    Raises:
        ValueError: ``prefix`` or ``ws_path`` is not an absolute path.
    """
    return page_routes(
        _PACKAGE,
        page="ticker.html",
        page_path=prefix + "ticker",
        prefix=prefix,
        assets={"%TICKER_JS%": "ticker.js", "%TICKER_CSS%": "ticker.css"},
        ws_path=ws_path,
        shared={"%UI_CSS%": "ui.css", "wshub-ui": "ui.js"},
    )


class TickerApp(StaticApp):
    """Serves the ticker's files; every other request goes on to the hub.

    Mount it like the chat::

        await start_hub(..., http_handlers=[TickerApp(ws_path="/ws")])
    """

    def __init__(self, *, prefix: str = "/", ws_path: str = "/ws") -> None:
        """Read the files once.

        Args:
            prefix: where the files live (see :func:`ticker_routes`).
            ws_path: the hub's WebSocket path.

        Raises:
            ValueError: ``prefix`` or ``ws_path`` is not an absolute path.
        """
        super().__init__(ticker_routes(prefix=prefix, ws_path=ws_path))


async def run_feed(hub: Hub, *, rate: float = 20.0) -> None:
    """Run the demo feed in the hub's process until cancelled (what ``wshub serve`` does).

    Every instrument's price is published first, so that a page shows all of them at once.
    If the hub refuses that (no ``ticker`` namespace), the error is logged and the feed
    does not start.

    Args:
        hub: the hub to publish into (with the ``ticker`` namespace).
        rate: ticks per second (see :class:`~wshub.apps.ticker.feed.PriceFeed`).

    Raises:
        ValueError: ``rate`` is out of range.
    """
    feed = PriceFeed(rate=rate)
    publisher = HubPublisher(hub)
    try:
        await feed.publish_all(publisher)
    except HubError as exc:  # e.g. a configuration without the ticker namespace
        logger.error("ticker feed: not started: %s", exc)
        return
    await feed.run(publisher)
