"""The asyncio side of one WebSocket connection, shared by server and client.

A connection object *is* the ``asyncio.Protocol``: bytes from the transport go
straight into the sans-I/O core, and the core's frames go straight to
``transport.write``. There is no Task and no Queue per message:

* callback style: a plain ``on_message(ws, message)`` runs inline, inside
  ``data_received``; coroutine callbacks are awaited in order by one Task per
  connection, created only when such a callback exists;
* modern style: messages wait in a bounded deque for ``recv()`` / ``async for``;
  above ``max_queue`` unread messages the transport stops reading (backpressure
  reaches the peer through TCP). The coroutine-callback queue has the same bound.

Sending never buffers without bound: the transport's write buffer has a
high-water mark (``write_limit``); ``send()`` waits below it. On the server, a
connection whose write buffer is above it also stops *reading* until the buffer
is below its low-water mark, so a peer that sends and never reads waits on its
own TCP window, whatever the handler style (a plain ``on_message`` answering with
``send_nowait`` included). ``send_nowait`` on a server connection buffering more
than ``SLOW_CONSUMER_FACTOR`` times ``write_limit`` closes it with 1008.

Reading is paused for several reasons at once (a full ``recv()`` queue, a full
callback queue, a full write buffer, a server's async ``process_request``); it
resumes only when none is left (``_pause_reading`` / ``_resume_reading``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import random
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    ProtocolError,
)
from ..protocol.connection import Connection as Core
from ..protocol.connection import PreparedMessage, State
from ..protocol.http11 import Request, Response, ResponseParser, parse_request_head

__all__ = [
    "SLOW_CONSUMER_FACTOR",
    "Callbacks",
    "ConnectionOptions",
    "WebSocketConnection",
    "is_async_callable",
]

Message = str | bytes
_OPEN = State.OPEN
_OK_CODES = frozenset({1000, 1001, 1005})

#: ``send_nowait`` on a server connection whose write buffer holds more than this many
#: times its ``write_limit`` (taken as at least 4 KiB) closes it with 1008 "slow
#: consumer": the peer does not read what it is sent. The message is dropped. ``send()``
#: waits at ``write_limit``, so it never gets there.
SLOW_CONSUMER_FACTOR = 16

# Why reading from the transport is paused: bits of ``WebSocketConnection._paused``.
# Reading resumes only when no bit is left.
PAUSE_QUEUE = 1  # max_queue messages wait for recv()
PAUSE_CALLBACKS = 2  # max_queue messages wait for a coroutine on_message
PAUSE_WRITE = 4  # the write buffer is above write_limit (servers only)
PAUSE_HANDSHAKE = 8  # a server's async process_request is running
# Round trips are timed with a high-resolution clock: uvloop's loop.time() moves in whole
# milliseconds, so a loopback ping measured with it reads 0.0.
_clock = time.perf_counter


class Callbacks:
    """The event-style callbacks of a server or client, resolved once.

    Whether each callback is a coroutine function is decided here, once per
    server, so the receive path only tests a flag.
    """

    __slots__ = (
        "on_close",
        "on_close_async",
        "on_error",
        "on_error_async",
        "on_message",
        "on_message_async",
        "on_open",
        "on_open_async",
    )

    def __init__(
        self,
        on_open: Callable[..., Any] | None = None,
        on_message: Callable[..., Any] | None = None,
        on_close: Callable[..., Any] | None = None,
        on_error: Callable[..., Any] | None = None,
    ) -> None:
        self.on_open = on_open
        self.on_message = on_message
        self.on_close = on_close
        self.on_error = on_error
        self.on_open_async = is_async_callable(on_open)
        self.on_message_async = is_async_callable(on_message)
        self.on_close_async = is_async_callable(on_close)
        self.on_error_async = is_async_callable(on_error)

    @classmethod
    def from_object(cls, obj: object, **overrides: Callable[..., Any] | None) -> Callbacks:
        """Take ``on_*`` methods from an object; keyword callbacks win."""
        found = {
            name: overrides.get(name) or getattr(obj, name, None)
            for name in ("on_open", "on_message", "on_close", "on_error")
        }
        return cls(**found)


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` returns a coroutine: an ``async def`` function, or an object
    whose ``__call__`` is one. Decided once per server or client, not per message."""
    if fn is None:
        return False
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - objects with an async __call__
    )


class ConnectionOptions:
    """Settings shared by every connection of one server or client (one object, not one per
    connection, so that an idle connection stays small)."""

    __slots__ = (
        "_deadlines",
        "callbacks",
        "close_timeout",
        "logger",
        "max_queue",
        "max_size",
        "modern",
        "open_timeout",
        "ping_interval",
        "ping_timeout",
        "write_limit",
    )

    def __init__(
        self,
        *,
        callbacks: Callbacks,
        modern: bool,
        max_size: int | None = 2**20,
        max_queue: int | None = 16,
        write_limit: int = 2**16,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        open_timeout: float | None = 10.0,
        close_timeout: float | None = 10.0,
        logger: logging.Logger,
    ) -> None:
        if max_size is not None and max_size <= 0:
            raise ValueError("max_size must be positive or None")
        if max_queue is not None and max_queue <= 0:
            raise ValueError("max_queue must be positive or None")
        if write_limit < 0:
            raise ValueError("write_limit must not be negative")
        self.callbacks = callbacks
        self.modern = modern
        self.max_size = max_size
        self.max_queue = max_queue
        self.write_limit = write_limit
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.logger = logger
        self._deadlines: Deadlines | None = None

    def deadlines(self, loop: asyncio.AbstractEventLoop) -> Deadlines:
        """The timing wheel of this server's (or client's) connections on ``loop``."""
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            # A slot an eighth of the shortest timeout long: deadlines are late by at
            # most 12.5%, and a wheel of 10,000 idle connections wakes rarely.
            shortest = min(
                (t for t in (self.open_timeout, self.ping_interval, self.ping_timeout) if t),
                default=1.0,
            )
            deadlines = self._deadlines = Deadlines(loop, resolution=min(shortest / 8, 1.0))
        return deadlines


class Deadlines:
    """Many connections' deadlines on one event-loop timer: a timing wheel.

    Each connection has at most one deadline at a time: ``open_timeout`` during the
    opening handshake, then the keepalive's next ping or its ``ping_timeout``. A
    ``TimerHandle`` for each costs some 600 bytes and a heap operation per connection;
    here an armed connection costs one entry in the set of its time slot, and one
    timer runs per slot that holds deadlines. A deadline fires at the end of its slot:
    late by at most ``resolution`` seconds, never early.
    """

    __slots__ = ("_handle", "_next", "_slots", "loop", "resolution")

    def __init__(self, loop: asyncio.AbstractEventLoop, *, resolution: float) -> None:
        self.loop = loop
        self.resolution = max(resolution, 0.001)
        self._slots: dict[int, set[WebSocketConnection]] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._next: int | None = None

    def __len__(self) -> int:
        """How many deadlines are armed."""
        return sum(len(slot) for slot in self._slots.values())

    def arm(self, conn: WebSocketConnection, delay: float) -> set[WebSocketConnection]:
        """Call ``conn._deadline_passed()`` in ``delay`` seconds; returns the slot to disarm."""
        index = math.ceil((self.loop.time() + delay) / self.resolution)
        slot = self._slots.get(index)
        if slot is None:
            slot = self._slots[index] = set()
            if self._next is None or index < self._next:
                self._schedule(index)
        slot.add(conn)
        return slot

    def _schedule(self, index: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._next = index
        self._handle = self.loop.call_at(index * self.resolution, self._fire)

    def _fire(self) -> None:
        self._handle = self._next = None
        # uvloop rounds timers to milliseconds: a slot due within one counts as due.
        now = (self.loop.time() + 0.001) / self.resolution
        slots = self._slots
        for index in sorted(i for i in slots if i <= now):
            slot = slots.pop(index)
            # A list: a callback may disarm or re-arm others of the same slot.
            for conn in list(slot):
                if conn._deadline is slot:
                    conn._deadline = None
                    try:
                        conn._deadline_passed()
                    except Exception as exc:
                        # One connection's failure must not cost the others their deadlines.
                        self.loop.call_exception_handler(
                            {"message": "a connection deadline failed", "exception": exc}
                        )
        if slots:
            self._schedule(min(slots))


class WebSocketConnection(asyncio.Protocol):
    """An open (or opening) WebSocket connection; see ``docs/api.md`` for the API."""

    __slots__ = (
        "__weakref__",
        "_cb_queue",
        "_cb_task",
        "_close_handle",
        "_closing_handled",
        "_core",
        "_cork",
        "_deadline",
        "_drain_waiter",
        "_frame",
        "_id",
        "_lost",
        "_lost_waiter",
        "_messages",
        "_opts",
        "_paused",
        "_pings",
        "_recv_waiter",
        "_request",
        "_response",
        "_write_paused",
        "latency",
        "loop",
        "subprotocol",
        "transport",
    )

    def __init__(self, options: ConnectionOptions) -> None:
        self._opts = options
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._core: Core | None = None
        # Frames a whole message the way the core would, for the send path to skip the
        # core's general frame builder; set when no extension was negotiated.
        self._frame: Callable[[Message], bytes] | None = None
        # While data_received runs, frames written to this connection collect here and
        # leave in one write: one system call per read, not one per message.
        self._cork: list[bytes] | None = None
        # The handshake's messages; the server keeps them as the bytes that went over
        # the wire, parsed when first read (most applications never read them).
        self._request: Request | bytes | None = None
        self._response: Response | bytes | None = None
        self.subprotocol: str | None = None
        self.latency = 0.0
        self._id: str | None = None
        # Modern style: () until the first message arrives, then the deque recv() reads
        # (an empty deque costs about 760 bytes, and most hub connections only ever get
        # a couple of commands); None: the callback style, no recv().
        self._messages: deque[Message] | tuple[()] | None = None
        self._recv_waiter: asyncio.Future[None] | None = None
        self._paused = 0  # PAUSE_* bits: why reading is paused
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._lost = False
        self._lost_waiter: asyncio.Future[None] | None = None
        self._closing_handled = False
        self._close_handle: asyncio.TimerHandle | None = None
        # The slot of this connection's deadline in the options' Deadlines (open_timeout,
        # then the keepalive), or None.
        self._deadline: set[WebSocketConnection] | None = None
        self._pings: dict[bytes, tuple[float, asyncio.Future[float] | None]] | None = None
        self._cb_queue: deque[tuple[Callable[..., Any], tuple[Any, ...]]] | None = None
        self._cb_task: asyncio.Task[None] | None = None

    # -- properties ---------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """A random identifier, made on first use (idle connections stay small)."""
        if self._id is None:
            self._id = os.urandom(16).hex()
        return self._id

    @property
    def request(self) -> Request | None:
        """The opening handshake's HTTP request (``None`` before it is read)."""
        request = self._request
        if type(request) is bytes:
            parsed = parse_request_head(request, max_request_size=None)
            assert parsed is not None, "a request head that parsed once parses again"
            request = self._request = parsed[0]
        return request  # type: ignore[return-value]

    @request.setter
    def request(self, request: Request | None) -> None:
        self._request = request

    @property
    def response(self) -> Response | None:
        """The opening handshake's HTTP response (``None`` before it is sent or read)."""
        response = self._response
        if type(response) is bytes:
            response = self._response = ResponseParser(max_response_size=None).feed(response)
            assert response is not None, "the 101 we sent is a whole response"
        return response  # type: ignore[return-value]

    @response.setter
    def response(self, response: Response | None) -> None:
        self._response = response

    @property
    def remote_address(self) -> Any:
        """The peer's address as the socket reports it, e.g. ``("127.0.0.1", 51234)``."""
        return self.transport.get_extra_info("peername") if self.transport else None

    @property
    def open(self) -> bool:
        """Whether messages can be sent."""
        return self._core is not None and self._core.state is _OPEN

    @property
    def close_code(self) -> int | None:
        """The close code received from the peer (1006 if none came); ``None`` while open."""
        if self._core is None:
            return 1006 if self._lost else None
        return (
            self._core.close_code
            if self._lost
            else self._core.close_rcvd and self._core.close_rcvd[0]
        )

    @property
    def close_reason(self) -> str | None:
        """The close reason received from the peer; ``None`` while open."""
        if self._core is None:
            return "" if self._lost else None
        return (
            self._core.close_reason
            if self._lost
            else self._core.close_rcvd and self._core.close_rcvd[1]
        )

    @property
    def writable(self) -> bool:
        """Whether the write buffer is below its high-water mark."""
        return not self._write_paused

    @property
    def write_buffer_size(self) -> int:
        """Bytes written but not yet handed to the kernel (the cork's included)."""
        if self.transport is None:
            return 0
        cork = self._cork
        size = self.transport.get_write_buffer_size()
        return size + sum(map(len, cork)) if cork else size

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = transport  # type: ignore[assignment]
        limit = self._opts.write_limit
        transport.set_write_buffer_limits(high=limit, low=limit // 4)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        core = self._core
        if core is None:
            self._handshake_data(data)
            return
        if self._cork is not None:
            # A fan-out left frames here for flush_corks(), which runs later in this
            # loop iteration: replies join them, in order, and go out in the same write.
            core.receive_data(data)
        else:
            cork: list[bytes] = []
            self._cork = cork
            core.receive_data(data)
            self._cork = None
            if cork:
                self.transport.write(cork[0] if len(cork) == 1 else b"".join(cork))  # type: ignore[union-attr]
        if core.state is not _OPEN:
            self._core_closing()

    def eof_received(self) -> bool | None:
        # Returning a false value makes the transport close itself.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._close_handle is not None:
            self._close_handle.cancel()
            self._close_handle = None
        self._disarm()
        core = self._core
        if core is not None:
            core.receive_eof()
        if self._recv_waiter is not None and not self._recv_waiter.done():
            self._recv_waiter.set_result(None)
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        if self._pings:
            for _, waiter in self._pings.values():
                if waiter is not None and not waiter.done():
                    waiter.set_exception(self._closed_exc())
                    waiter.exception()  # the pinger may be gone: mark it retrieved
            self._pings = None
        if self._lost_waiter is not None and not self._lost_waiter.done():
            self._lost_waiter.set_result(None)
        if core is not None:
            self._opts.logger.debug(
                "connection closed: %s %s", core.close_code, core.close_reason or ""
            )
            cb = self._opts.callbacks
            if cb.on_close is not None:
                self._run_callback(
                    cb.on_close, cb.on_close_async, core.close_code, core.close_reason
                )
        self._connection_gone()

    def pause_writing(self) -> None:
        self._write_paused = True
        core = self._core
        if self._guard_writes and core is not None and core.state is _OPEN:
            self._pause_reading(PAUSE_WRITE)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._paused & PAUSE_WRITE:
            self._resume_reading(PAUSE_WRITE)
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- flow control: why reading is paused ----------------------------------------------------

    #: Whether a write buffer above ``write_limit`` pauses reading, and ``send_nowait`` far
    #: beyond it closes a slow consumer. True on the server, where it bounds what any handler
    #: style buffers for a peer that sends and never reads. False on the client: if both ends
    #: stopped reading while their own writes were blocked, two peers streaming to each other
    #: faster than they read would wait on each other forever; and a client that keeps
    #: reading can legitimately queue more than the slow-consumer limit (an echo of a fast
    #: server's burst) while the server reads it back.
    _guard_writes = False

    def _pause_reading(self, reason: int) -> None:
        """Stop reading from the transport for ``reason`` (a ``PAUSE_*`` bit)."""
        if not self._paused and self.transport is not None and not self._lost:
            self.transport.pause_reading()
        self._paused |= reason

    def _resume_reading(self, reason: int) -> None:
        """Drop ``reason``; read again once no other reason to pause is left."""
        self._paused &= ~reason
        if not self._paused and self.transport is not None and not self._lost:
            self.transport.resume_reading()

    # -- hooks for the server and client -------------------------------------------------------

    def _handshake_data(self, data: bytes) -> None:
        raise NotImplementedError

    def _connection_gone(self) -> None:
        """Called last in ``connection_lost``; the server forgets the connection here."""

    def _start(self, core: Core) -> None:
        """Install the core after a successful handshake and wire the receive path."""
        opts = self._opts
        self._core = core
        assert self.transport is not None
        core.write = self._write
        core.on_pong = self._on_pong
        cb = opts.callbacks
        if opts.modern:
            self._messages = ()
            core.on_message = self._queue_message
        elif cb.on_message is not None:
            core.on_message = (
                self._queue_cb_message if cb.on_message_async else self._call_on_message
            )
        else:
            core.on_message = _drop
        core.on_ping = _drop
        core.on_close = _drop_close
        if opts.ping_interval is not None:
            self._arm(opts.ping_interval)
        if cb.on_open is not None:
            self._run_callback(cb.on_open, cb.on_open_async)

    def _flush_cork(self) -> None:
        """Write what the cork holds now: the transport is about to be closed."""
        cork = self._cork
        if cork:
            # Emptied in place: a read being processed holds this same list and writes
            # what is left in it when the read is done.
            data = b"".join(cork)
            cork.clear()
            self.transport.write(data)  # type: ignore[union-attr]

    def _write(self, data: bytes) -> None:
        """Where the core's frames go: the cork while a read is processed, else the transport.

        A cork that holds ``CORK_MAX_FRAMES`` frames is written out early (in order), so that
        a handler answering one read with many messages still meets the transport's flow
        control, and with it the slow-consumer limit of ``send_nowait``.
        """
        cork = self._cork
        if cork is None:
            self.transport.write(data)  # type: ignore[union-attr]
        else:
            cork.append(data)
            if len(cork) >= CORK_MAX_FRAMES:
                self.transport.write(b"".join(cork))  # type: ignore[union-attr]
                cork.clear()

    # -- receiving ----------------------------------------------------------------------------

    def _call_on_message(self, message: Message) -> None:
        cb = self._opts.callbacks
        try:
            cb.on_message(self, message)  # type: ignore[misc]
        except Exception as exc:
            self._callback_failed(exc)

    def _queue_cb_message(self, message: Message) -> None:
        opts = self._opts
        cb = opts.callbacks
        assert cb.on_message is not None
        self._run_callback(cb.on_message, True, message)
        # The callback Task's queue is bounded like recv()'s: above max_queue the peer
        # waits on TCP (what one read holds still lands here; the next read waits).
        max_queue = opts.max_queue
        if max_queue is not None and len(self._cb_queue) >= max_queue:  # type: ignore[arg-type]
            self._pause_reading(PAUSE_CALLBACKS)

    def _queue_message(self, message: Message) -> None:
        messages = self._messages
        if type(messages) is not deque:
            messages = self._messages = deque()
        messages.append(message)
        waiter = self._recv_waiter
        if waiter is not None:
            self._recv_waiter = None
            if not waiter.done():
                waiter.set_result(None)
        max_queue = self._opts.max_queue
        if max_queue is not None and len(messages) >= max_queue:
            self._pause_reading(PAUSE_QUEUE)

    async def recv(self) -> Message:
        """Wait for the next message: ``str`` for text, ``bytes`` for binary.

        Raises:
            ConnectionClosedOK: the connection closed normally and every message was read.
            ConnectionClosedError: it closed abnormally.
            InvalidState: the connection uses ``on_message`` callbacks instead.
        """
        if self._messages is None:
            if self._core is None or self._lost:
                raise self._closed_exc()
            raise InvalidState("recv() is not available when on_message callbacks are used")
        while not self._messages:
            if self._lost or (
                self._core is not None
                and self._core.state is not _OPEN
                and self._core.close_rcvd is not None
            ):
                raise self._closed_exc()
            if self._recv_waiter is not None:
                raise InvalidState("recv() is already being awaited")
            waiter = self._recv_waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                if self._recv_waiter is waiter:
                    self._recv_waiter = None
        messages = self._messages
        assert type(messages) is deque
        message = messages.popleft()
        if not messages:
            self._messages = ()  # an idle connection keeps no deque
        if self._paused & PAUSE_QUEUE and len(messages) <= (self._opts.max_queue or 0) // 4:
            self._resume_reading(PAUSE_QUEUE)
        return message

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            try:
                yield await self.recv()
            except ConnectionClosedOK:
                return

    # -- sending ------------------------------------------------------------------------------

    def cork(self) -> None:
        """Hold what is sent on this connection until the end of this loop iteration.

        Everything sent until then (``send_nowait``, ``broadcast``, replies) goes out in one
        ``write`` before the loop next waits for I/O, in the order it was sent. Worth it
        before a fan-out that may send one peer several messages in one iteration (a feed
        updating several channels): the system call, not the framing, is most of what a
        delivery costs. A cork that holds ``CORK_MAX_FRAMES`` frames is written out early,
        so a long burst still reaches the transport and its flow control.
        """
        cork = self._cork
        if cork is None:
            if not self._lost and self.transport is not None:
                self._cork = []
                corked_on(self.loop).append(self)
        elif len(cork) >= CORK_MAX_FRAMES:
            self.transport.write(b"".join(cork))  # type: ignore[union-attr]
            cork.clear()

    def send_nowait(self, message: Message) -> None:
        """Frame ``message`` and write it now, without waiting for the buffer to drain.

        For plain callbacks, which cannot await. Above ``write_limit`` a server stops
        reading from this connection until the buffer drains, so an echo never buffers
        much more than one read's worth; check ``writable`` before sending more than that.
        On the server, a connection whose write buffer holds more than
        ``SLOW_CONSUMER_FACTOR`` times ``write_limit`` is a slow consumer: it is closed with
        1008 "slow consumer" and ``message`` is dropped (counted in
        ``stats.slow_consumer_disconnects``).

        Raises:
            ConnectionClosed: the connection is closing or closed (slow consumers included,
                from the next call on).
        """
        core = self._core
        if core is None or core.state is not _OPEN:
            raise self._closed_exc()
        if self._write_paused and self._guard_writes and self._slow_consumer():
            return
        frame = self._frame
        if frame is None:
            core.send(message)
        else:
            self._write(frame(message))

    def send_prepared_nowait(self, prepared: PreparedMessage) -> None:
        """Send a message framed once for many connections, without waiting.

        The fan-out form of :meth:`send_nowait`: a server connection writes the frame of
        ``prepared`` that every connection with the same framing shares (uncompressed, or
        compressed once per set of permessage-deflate parameters when context takeover
        is off: ``compression="deflate-shared"``); other connections frame and compress
        ``prepared.message`` for themselves. The connection is corked as by :meth:`cork`,
        so a fan-out reaches each peer in one ``write`` per loop iteration. Backpressure
        and errors are those of :meth:`send_nowait`.

        Raises:
            ConnectionClosed: the connection is closing or closed.
        """
        core = self._core
        if core is None or core.state is not _OPEN:
            raise self._closed_exc()
        if self._write_paused and self._guard_writes and self._slow_consumer():
            return
        if self._cork is None:
            self.cork()
        frame = core.prepared_frame(prepared)
        if frame is None:
            core.send(prepared.message)
        else:
            self._write(frame)

    def _slow_consumer(self) -> bool:
        """Close with 1008 if more than ``SLOW_CONSUMER_FACTOR`` times the limit is buffered."""
        buffered = self.write_buffer_size
        if buffered <= SLOW_CONSUMER_FACTOR * max(self._opts.write_limit, 4096):
            return False
        self._opts.logger.info(
            "slow consumer: %d bytes buffered; closing the connection (1008)", buffered
        )
        self._count_slow_consumer()
        self._close_now(1008, "slow consumer")
        return True

    def _count_slow_consumer(self) -> None:
        """Hook: a server counts slow-consumer disconnects in its stats."""

    async def send(self, message: Message) -> None:
        """Send a message; waits while the write buffer is above ``write_limit``.

        The wait comes first, and nothing runs between its end and the write, so ``send``
        never writes to a buffer over its limit and is never closed as a slow consumer:
        each task waiting in it holds one message, no more.
        """
        if self._write_paused:
            await self.drain()
        self.send_nowait(message)

    async def drain(self) -> None:
        """Wait until the write buffer is below its low-water mark (or the connection is gone)."""
        while self._write_paused and not self._lost:
            if self._drain_waiter is None:
                self._drain_waiter = self.loop.create_future()
            await asyncio.shield(self._drain_waiter)
        if self._lost:
            raise self._closed_exc()

    async def ping(self, data: bytes | None = None) -> float:
        """Send a ping and wait for its pong; returns the round-trip time in seconds."""
        core = self._core
        if core is None or core.state is not _OPEN:
            raise self._closed_exc()
        if data is None:
            data = struct.pack("!I", random.getrandbits(32))
        if self._pings is None:
            self._pings = {}
        if data in self._pings:
            raise InvalidState("a ping with the same data is already waiting for its pong")
        # Send first: a ping the core refuses (over 125 bytes) must not be left waiting.
        # The pong cannot arrive before the entry exists: nothing awaits in between.
        core.ping(data)
        waiter: asyncio.Future[float] = self.loop.create_future()
        self._pings[data] = (_clock(), waiter)
        return await waiter

    def _on_pong(self, data: bytes) -> None:
        pings = self._pings
        if not pings or data not in pings:
            return  # unsolicited pong (§5.5.3): a heartbeat, nothing to do
        # A pong acknowledges its ping and every earlier one (§5.5.3).
        now = _clock()
        keepalive_acknowledged = False
        for key in list(pings):
            sent, waiter = pings.pop(key)
            if waiter is None:
                keepalive_acknowledged = True
            elif not waiter.done():
                waiter.set_result(now - sent)
            if key == data:
                self.latency = now - sent
                break
        opts = self._opts
        if keepalive_acknowledged and opts.ping_interval is not None and not self._lost:
            # The keepalive ping was answered: its ping_timeout deadline gives way to
            # the next ping's.
            self._arm(opts.ping_interval)

    # -- deadlines: open_timeout, keepalive ------------------------------------------------------

    def _arm(self, delay: float) -> None:
        """Set this connection's one deadline ``delay`` seconds from now (replacing any)."""
        if self._deadline is not None:
            self._deadline.discard(self)
        self._deadline = self._opts.deadlines(self.loop).arm(self, delay)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.discard(self)
            self._deadline = None

    def _deadline_passed(self) -> None:
        """The deadline set by ``_arm`` has come: the keepalive's (the server adds one)."""
        core = self._core
        if core is None or core.state is not _OPEN:
            return
        pings = self._pings
        if pings is not None and any(waiter is None for _, waiter in pings.values()):
            # The keepalive ping is still unanswered after ping_timeout.
            self._opts.logger.info("keepalive ping timed out; closing the connection (1011)")
            self._close_now(1011, "keepalive ping timeout")
            return
        # Time for a keepalive ping; the peer has ping_timeout seconds to answer. It is
        # also when a connection that sent nothing since the last ping gives back its
        # compressor (see PerMessageDeflate.release_idle).
        core.release_idle_memory()
        data = struct.pack("!I", random.getrandbits(32))
        if pings is None:
            pings = self._pings = {}
        pings[data] = (_clock(), None)
        core.ping(data)
        timeout = self._opts.ping_timeout
        if timeout is not None:
            self._arm(timeout)

    # -- closing ------------------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake (§7.1.2) and wait until the connection is gone.

        Waits at most ``close_timeout`` for the peer; then the TCP connection is dropped.
        """
        core = self._core
        if core is None:
            if self.transport is not None and not self._lost:
                self.transport.abort()
        elif core.state is _OPEN:
            core.close(code, reason)
            self._core_closing()
        await self.wait_closed()

    def _close_now(self, code: int, reason: str) -> None:
        """Send a close frame and drop the connection without waiting (dead or hostile peer)."""
        if self._core is not None and self._core.state is _OPEN:
            self._core.close(code, reason)
        if self.transport is not None and not self._lost:
            self._flush_cork()
            self.transport.close()
            self._arm_close_timer()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        if self._lost:
            return
        if self._lost_waiter is None:
            self._lost_waiter = self.loop.create_future()
        await asyncio.shield(self._lost_waiter)

    def _arm_close_timer(self) -> None:
        if self._close_handle is None and not self._lost:
            timeout = self._opts.close_timeout
            if timeout is not None:
                self._close_handle = self.loop.call_later(timeout, self._abort)

    def _abort(self) -> None:
        self._close_handle = None
        if self.transport is not None and not self._lost:
            self.transport.abort()

    def _core_closing(self) -> None:
        """React to the core leaving OPEN: a close frame was sent or received, or it failed."""
        core = self._core
        assert core is not None and self.transport is not None
        if self._lost:
            return
        if self._paused & PAUSE_WRITE:
            # Closing (§7.1.2): read on whatever the write buffer holds, so that the peer's
            # close frame is seen; nothing more is sent, so the buffer cannot grow, and a
            # peer blocked writing to us gets unblocked to read our close.
            self._resume_reading(PAUSE_WRITE)
        self._flush_cork()
        if not self._closing_handled and core.failure is not None:
            self._closing_handled = True
            self._peer_failed(core.failure)
        if core.close_handshake_done:
            if self._is_server or core.failure is not None:
                # §7.1.1: the server closes the TCP connection first.
                self.transport.close()
            self._arm_close_timer()
        elif core.failure is not None:
            if self._is_server and self.transport.can_write_eof():
                self.transport.write_eof()
            self._arm_close_timer()
        else:
            self._arm_close_timer()

    @property
    def _is_server(self) -> bool:
        return False

    def _peer_failed(self, exc: ProtocolError) -> None:
        self._opts.logger.info("peer broke the protocol: %d %s", exc.code, exc.reason)
        cb = self._opts.callbacks
        if cb.on_error is not None:
            self._run_callback(cb.on_error, cb.on_error_async, exc)

    def _closed_exc(self) -> ConnectionClosed:
        core = self._core
        if core is None:
            return ConnectionClosedError(1006, "")
        rcvd = core.close_rcvd
        sent = core.close_sent
        code = rcvd[0] if rcvd else 1006
        reason = rcvd[1] if rcvd else ""
        if rcvd is not None and rcvd[0] in _OK_CODES and (sent is None or sent[0] in _OK_CODES):
            return ConnectionClosedOK(code, reason, rcvd_then_sent=core.close_rcvd_then_sent)
        return ConnectionClosedError(code, reason, rcvd_then_sent=core.close_rcvd_then_sent)

    # -- callbacks ----------------------------------------------------------------------------

    def _run_callback(self, fn: Callable[..., Any], is_async: bool, *args: Any) -> None:
        """Run a callback now (plain) or in order on this connection's callback Task (async)."""
        if not is_async:
            try:
                fn(self, *args)
            except Exception as exc:
                if fn is not self._opts.callbacks.on_error:
                    self._callback_failed(exc)
                else:
                    self._opts.logger.exception("on_error callback failed")
            return
        if self._cb_queue is None:
            self._cb_queue = deque()
        self._cb_queue.append((fn, args))
        if self._cb_task is None:
            self._cb_task = self.loop.create_task(self._run_async_callbacks())

    async def _run_async_callbacks(self) -> None:
        queue = self._cb_queue
        assert queue is not None
        try:
            while queue:
                fn, args = queue.popleft()
                if self._paused & PAUSE_CALLBACKS and len(queue) <= (
                    (self._opts.max_queue or 0) // 4
                ):
                    self._resume_reading(PAUSE_CALLBACKS)
                try:
                    await fn(self, *args)
                except Exception as exc:
                    if fn is not self._opts.callbacks.on_error:
                        self._callback_failed(exc)
                    else:
                        self._opts.logger.exception("on_error callback failed")
        finally:
            self._cb_task = None

    def _callback_failed(self, exc: Exception) -> None:
        """A user callback raised: report it, and close with 1011 (no detail to the peer).

        A ``ConnectionClosed`` from a send on a connection that is already closing (a slow
        consumer closed by ``send_nowait``, a peer's close in the same read) is not a bug
        of the callback: it is only logged at debug level.
        """
        if isinstance(exc, ConnectionClosed) and not self.open:
            self._opts.logger.debug("callback sent on a closing connection: %s", exc)
            return
        cb = self._opts.callbacks
        if cb.on_error is not None:
            self._run_callback(cb.on_error, cb.on_error_async, exc)
        else:
            self._opts.logger.error("callback failed", exc_info=exc)
        if self.open:
            self._core.close(1011, "")  # type: ignore[union-attr]
            self._core_closing()


#: a connection's cork is written out early once it holds this many frames
CORK_MAX_FRAMES = 64

# The connections corked on each event loop in its current iteration (see ``cork``).
_corked: dict[asyncio.AbstractEventLoop, list[WebSocketConnection]] = {}


def corked_on(loop: asyncio.AbstractEventLoop) -> list[WebSocketConnection]:
    """The connections corked on ``loop`` in this iteration; the first call schedules the flush.

    A connection appended here must have a cork (``_cork`` not ``None``): ``flush_corks``
    writes it out and removes it, once, before the loop next waits for I/O.
    """
    conns = _corked.get(loop)
    if conns is None:
        conns = _corked[loop] = []
        loop.call_soon(_flush_corked, loop)
    return conns


def _flush_corked(loop: asyncio.AbstractEventLoop) -> None:
    flush_corks(_corked.pop(loop, []))


def flush_corks(connections: list[WebSocketConnection]) -> None:
    """Write out what a fan-out corked, one ``write`` per connection.

    ``broadcast`` and ``cork()`` leave frames in each connection's cork and schedule this
    with ``call_soon``: every message sent in the same loop iteration (two publications in
    one read, a feed updating several channels) reaches a peer in one system call instead
    of one each. That call is most of the cost of a delivery.
    """
    for conn in connections:
        cork = conn._cork
        conn._cork = None
        if cork and not conn._lost:
            transport = conn.transport
            if transport is not None and not transport.is_closing():
                transport.write(cork[0] if len(cork) == 1 else b"".join(cork))


def _drop(_: object) -> None:
    """Discard an event nobody listens to."""


def _drop_close(_code: int, _reason: str) -> None:
    """Discard a close event; the transport reads the core's state instead."""
