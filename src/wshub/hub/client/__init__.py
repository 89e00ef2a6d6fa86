"""The Python hub client: :class:`HubClient` speaks ``wshub.v1`` (docs/protocol.md).

A :class:`HubClient` keeps one WebSocket connection to a hub and hides its losses::

    async with HubClient("ws://127.0.0.1:8765/ws", token) as client:
        sub = await client.subscribe("chat:lobby")
        await client.publish("chat:lobby", {"text": "hi"})
        async for pub in sub:
            print(pub.offset, pub.data)

What it guarantees, and how:

* **Reconnects by itself.** After an abnormal closure (lost TCP connection, 1001 hub restart,
  1011, 4002, 4004 slow consumer; 4005 rate limited, after a longer wait) it reconnects with
  exponential backoff, capped at ``max_delay`` (5 s by default), with full jitter and logs
  why on the ``wshub.hub.client`` logger. Calls
  made meanwhile wait and go out once the subscriptions are restored. Closures that a retry
  cannot fix end the client instead (4000 bad commands, 4006 too many connections, 4007
  subprotocol, and 4001/4003 when the token is a fixed string rather than a callable that can
  fetch a new one); every waiting call and subscription then raises the error. Only the first
  connection is not retried: :meth:`HubClient.connect` raises, so that a wrong URL or token
  fails fast.
* **Exactly once, in order, across reconnects.** Each :class:`Subscription` keeps the
  position of the last publication it accepted and re-subscribes with ``since`` = that
  position, so the hub sends exactly the missed publications. Publications are accepted only
  in offset order; an offset already seen is dropped.
* **Recovery failures are reported, never hidden.** When the hub cannot recover (the stream's
  epoch changed, or its history no longer reaches back), the subscription sets
  ``sub.recovered = False`` and, at that point of the stream, ``async for`` raises
  :class:`~wshub.exceptions.HubError` with code 116 (``position unrecoverable``). The
  application reloads its state (e.g. with :meth:`HubClient.history`) and iterates again:
  the publications after the gap follow. With callbacks, ``on_error(sub, exc)`` is called
  instead.
* **Publishes are retried without duplicates.** Every publish carries a ``message_id``
  (a random one unless given); a publish whose reply was lost with the connection is sent
  again with the same id after the re-subscriptions, and the hub answers with the offset it
  assigned the first time. ``publish()`` returns exactly one offset. (A publish whose caller
  was cancelled is not resent; it may or may not have been made.)
* **Bounded buffers.** A subscription buffers at most ``queue_size`` unread publications.
  When its reader falls behind that far, the client stops buffering (it keeps reading the
  socket, so replies and other channels are not held up) and, once the reader has caught up
  to half the buffer, fetches what it skipped with ``history`` ``since`` its position: still
  exactly once and in order (this needs the ``r`` permission; without it, or once the hub's
  history was trimmed, the gap is reported as above). A gap in the hub's own stream
  (namespaces whose slow-consumer policy drops publications) is filled the same way.
  With ``fill_gaps=False`` (tickers,
  where only the newest value matters) the oldest buffered publication is dropped instead,
  and gaps in the stream are skipped. At most ``max_pending`` requests wait for a reply;
  further calls wait for room.

Replies are matched to commands by request id; error replies raise
:class:`~wshub.exceptions.HubError`, or :class:`~wshub.exceptions.AuthError` for the
codes about tokens and permissions (103, 104, 113). Every message from the hub is read once
by :func:`wshub.hub.wire.parse_message` into a typed value; a reply whose result does not
read raises :class:`~wshub.exceptions.ProtocolError` from its call, any other malformed
message is logged and skipped.

The package, one job per module: :mod:`~wshub.hub.client.values` (what the client hands
out), :mod:`~wshub.hub.client.subscription` (ordering and gap repair),
:mod:`~wshub.hub.client.requests` (request/reply matching),
:mod:`~wshub.hub.client.reconnect` (whether and when to reconnect) and
:mod:`~wshub.hub.client.core` (:class:`HubClient`, which wires them together).
"""

from __future__ import annotations

from wshub.hub.client.core import ClientState, HubClient
from wshub.hub.client.reconnect import Backoff
from wshub.hub.client.subscription import Subscription
from wshub.hub.client.values import (
    ChannelEvent,
    ErrorHandler,
    EventHandler,
    HistoryPage,
    Publication,
    PublicationHandler,
    SubscriptionStats,
    TokenSource,
    hub_error,
)
from wshub.hub.wire import Position

__all__ = [
    "Backoff",
    "ChannelEvent",
    "ClientState",
    "ErrorHandler",
    "EventHandler",
    "HistoryPage",
    "HubClient",
    "Position",
    "Publication",
    "PublicationHandler",
    "Subscription",
    "SubscriptionStats",
    "TokenSource",
    "hub_error",
]
