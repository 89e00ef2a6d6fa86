"""Tests for wshub.hub._fanout: one publication, framed once, to every local subscriber."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import orjson

import wshub
from wshub.hub._fanout import Fanout
from wshub.hub._outbox import EVT, POS
from wshub.hub.backends import MemoryBroker
from wshub.protocol import Frame, Opcode, PreparedMessage
from wshub.testing import RawClient

from .conftest import MakeClient, demo_hub, start_demo_hub


async def test_a_publication_is_prepared_once_for_every_subscriber(
    make_client: MakeClient,
) -> None:
    """Every subscriber that keeps up is handed the same PreparedMessage, and it holds
    exactly the push each of them records."""
    async with demo_hub(expire_interval=None) as hub:
        clients = [await make_client(hub) for _ in range(3)]
        for client in clients:
            await client.ok("subscribe", channel="chat:room")
        await hub.publish("chat:room", {"text": "once"})
        shared = [client.peer.shared[-1] for client in clients]
        assert shared[1] is shared[0] and shared[2] is shared[0]
        for client in clients:
            push = client.peer.pushes("pub", "chat:room")[-1]
            assert push["data"] == {"text": "once"}
            assert client.peer.sent[-1] == shared[0].message


async def test_a_backlog_is_never_overtaken_by_a_shared_frame(make_client: MakeClient) -> None:
    """A subscriber with queued pushes gets the next ones queued behind them, in order,
    while the others get the shared frame at once."""
    async with demo_hub(expire_interval=None) as hub:
        fast, slow = await make_client(hub), await make_client(hub)
        for client in (fast, slow):
            await client.ok("subscribe", channel="chat:room")
        slow.peer.writable = False
        shared_before = len(slow.peer.shared)  # join pushes are fanned out too
        for n in (1, 2):
            await hub.publish("chat:room", {"n": n})
        assert slow.session.queued_messages == 2
        # Writable again, but the backlog is still queued: the next publication must wait
        # behind it rather than take the shared frame.
        slow.peer._writable = True
        await hub.publish("chat:room", {"n": 3})
        assert len(slow.peer.shared) == shared_before
        slow.peer.writable = True
        while slow.session.queued_messages:
            await asyncio.sleep(0)
        await hub.publish("chat:room", {"n": 4})
        offsets = [push["offset"] for push in slow.peer.pushes("pub", "chat:room")]
        assert offsets == [1, 2, 3, 4]
        assert [p.message for p in slow.peer.shared[shared_before:]] == [slow.peer.sent[-1]]
        fast_pubs = [p for p in fast.peer.shared if '"push":"pub"' in str(p.message)]
        assert len(fast_pubs) == 4


async def raw_subscriber(
    port: int, offer: str | None, rcvbuf: int | None = None
) -> tuple[RawClient, str | None]:
    """A raw connection (no compression unless ``offer``; ``SO_RCVBUF`` if ``rcvbuf``),
    connected and subscribed to chat:room; returns it and the server's
    Sec-WebSocket-Extensions."""
    if rcvbuf is None:
        raw = await RawClient.connect("127.0.0.1", port)
    else:
        raw = await RawClient.connect("127.0.0.1", port, rcvbuf=rcvbuf, limit=rcvbuf)
    headers = [("Sec-WebSocket-Protocol", "wshub.v1")]
    if offer is not None:
        headers.append(("Sec-WebSocket-Extensions", offer))
    response = await raw.handshake("/ws", headers)
    for n, command in enumerate(({"cmd": "connect"}, {"cmd": "subscribe", "channel": "chat:room"})):
        raw.send_text(orjson.dumps({"id": n + 1, **command}).decode())
        while b'"result"' not in inflate(await raw.recv_frame(), 12):
            pass
    return raw, response.headers.get("Sec-WebSocket-Extensions")


def inflate(frame: Frame, window_bits: int | None) -> bytes:
    """A text frame's payload, inflated if it is compressed (RSV1) with a fresh
    decompressor: with server_no_context_takeover each message stands alone."""
    assert frame.opcode == Opcode.TEXT
    if not frame.rsv1:
        return frame.payload
    assert window_bits is not None
    return zlib.decompressobj(wbits=-window_bits).decompress(frame.payload + b"\x00\x00\xff\xff")


async def first_push(raw: RawClient, window_bits: int | None) -> tuple[bool, bytes, bytes]:
    """(compressed?, frame payload as sent, JSON) of the next publication push."""
    while True:
        frame = await raw.recv_frame()
        text = inflate(frame, window_bits)
        if b'"push":"pub"' in text:
            return frame.rsv1, frame.payload, text


async def test_subscribers_on_real_sockets_get_the_same_bytes() -> None:
    """Without compression every subscriber receives the very same frame payload."""
    server = await start_demo_hub(
        "127.0.0.1", 0, ephemeral=True, allow_anonymous=True, compression=None
    )
    try:
        raws = [(await raw_subscriber(server.port, None))[0] for _ in range(3)]
        await server.hub.publish("chat:room", {"text": "plain"})
        got = [await first_push(raw, None) for raw in raws]
        assert {payload for _, payload, _ in got} == {got[0][1]}
        assert not got[0][0]
        assert orjson.loads(got[0][2])["data"] == {"text": "plain"}
        for raw in raws:
            await raw.close()
    finally:
        await server.close()


async def test_shared_compression_sends_one_compressed_frame_to_all() -> None:
    """compression="deflate-shared": a browser-like offer is answered with
    server_no_context_takeover, every subscriber gets the same compressed bytes, each
    inflates on its own (twice in a row: no context), and our aio client reads them."""
    server = await start_demo_hub(
        "127.0.0.1", 0, ephemeral=True, allow_anonymous=True, compression="deflate-shared"
    )
    try:
        offer = "permessage-deflate; client_max_window_bits"
        subscribed = [await raw_subscriber(server.port, offer) for _ in range(3)]
        for _, extensions in subscribed:
            assert extensions is not None and "server_no_context_takeover" in extensions
            assert "server_max_window_bits=12" in extensions
        raws = [raw for raw, _ in subscribed]
        async with wshub.connect(server.url(), subprotocols=["wshub.v1"]) as ws:
            replies: list[dict[str, Any]] = []
            for n, command in enumerate(
                ({"cmd": "connect"}, {"cmd": "subscribe", "channel": "chat:room"})
            ):
                await ws.send(orjson.dumps({"id": n + 1, **command}).decode())
                while not replies or replies[-1].get("id") != n + 1:
                    replies.append(orjson.loads(await ws.recv()))
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
            assert extensions is not None and "server_no_context_takeover" in extensions
            text = "compress me " * 40
            for n in (1, 2):
                await server.hub.publish("chat:room", {"text": text, "n": n})
                got = [await first_push(raw, 12) for raw in raws]
                assert all(compressed for compressed, _, _ in got)
                assert {payload for _, payload, _ in got} == {got[0][1]}
                assert len(got[0][1]) < len(got[0][2]) / 4
                assert orjson.loads(got[0][2])["data"] == {"text": text, "n": n}
                while True:
                    message = orjson.loads(await ws.recv())
                    if message.get("push") == "pub":
                        break
                assert message["data"] == {"text": text, "n": n}
        for raw in raws:
            await raw.close()
    finally:
        await server.close()


async def test_batched_fan_out_keeps_a_backlogged_subscriber_in_order() -> None:
    """On real sockets the subscribers that keep up take the batched path while one that
    stopped reading gets its pushes queued (never dropped, never overtaken by a later
    shared frame); once it reads again it has every offset in order, as the others do, and
    ``deliveries`` counts every push once."""
    server = await start_demo_hub(
        "127.0.0.1", 0, ephemeral=True, allow_anonymous=True, compression=None
    )
    try:
        fast = [(await raw_subscriber(server.port, None))[0] for _ in range(2)]
        slow, _ = await raw_subscriber(server.port, None, rcvbuf=4096)
        slow.pause_reading()
        subs = server.hub._fanout.subscribers("chat:room")
        assert len(subs) == 3
        before = server.hub.stats.deliveries
        text = "x" * 16_384
        readers = [asyncio.ensure_future(pub_offsets(raw, 0)) for raw in fast]
        n = 0
        while not any(s.session.queued_messages for s in subs):
            n += 1
            await server.hub.publish("chat:room", {"text": text})
            await asyncio.sleep(0)
            assert n < 200, "the paused subscriber never fell behind"
        for _ in range(3):  # a few more, queued behind the backlog
            n += 1
            await server.hub.publish("chat:room", {"text": text})
        for reader in readers:
            reader.cancel()
        slow.resume_reading()
        assert await pub_offsets(slow, n) == list(range(1, n + 1))
        for raw in fast:
            assert await pub_offsets(raw, n) == list(range(1, n + 1))
        assert server.hub.stats.deliveries - before == 3 * n
        for raw in (*fast, slow):
            await raw.close()
    finally:
        await server.close()


async def pub_offsets(raw: RawClient, count: int) -> list[int]:
    """The offsets of the next ``count`` publication pushes ``raw`` reads."""
    offsets: list[int] = []
    while len(offsets) < count:
        push = orjson.loads(inflate(await raw.recv_frame(), None))
        if push.get("push") == "pub":
            offsets.append(push["offset"])
    return offsets


class RecordingSubscriber:
    """A Subscriber that records what it is fed."""

    def __init__(self, key: str) -> None:
        self.channel = "room"
        self.key = key
        self.active = True
        self.fed: list[tuple[int, int, str, str, PreparedMessage | None]] = []

    def feed(
        self,
        kind: int,
        offset: int,
        epoch: str,
        message: str,
        prepared: PreparedMessage | None = None,
    ) -> None:
        self.fed.append((kind, offset, epoch, message, prepared))


async def test_a_fanout_without_feed_many_feeds_each_subscriber() -> None:
    """Fanout's default feeds every subscriber through its own ``feed``, in order, with one
    PreparedMessage per publication shared by all of them."""
    tasks: list[asyncio.Task[Any]] = []
    broker = MemoryBroker()
    try:
        fanout: Fanout[RecordingSubscriber] = Fanout(
            broker, spawn=lambda coro: tasks.append(asyncio.ensure_future(coro))
        )
        subs = [RecordingSubscriber(key) for key in "ab"]
        for sub in subs:
            assert await fanout.add(sub)
        await fanout.publish("room", POS, 1, "e", b'{"n":1}')
        await fanout.publish("room", EVT, 0, "e", b'{"join":1}')
        for sub in subs:
            assert [(k, o, m) for k, o, _, m, _ in sub.fed] == [
                (POS, 1, '{"n":1}'),
                (EVT, 0, '{"join":1}'),
            ]
        assert subs[0].fed[0][4] is subs[1].fed[0][4] is not None
        for sub in subs:
            fanout.remove(sub)
        await asyncio.gather(*tasks)
    finally:
        await broker.close()
