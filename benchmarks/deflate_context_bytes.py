"""Bytes on the wire per message with and without context takeover (RFC 7692).

``compression="deflate-shared"`` answers every permessage-deflate offer with
``server_no_context_takeover``, so that the hub compresses a publication once for all its
subscribers. The price is ratio: each message is compressed alone, without the window of
the messages before it. This script measures that price on the hub's typical pushes, as
``wshub serve`` frames them (a chat room's ``pub`` pushes, a ticker's quotes, ``join``
events), with the server's parameters (12-bit window, level 6, memLevel 5)::

    python benchmarks/deflate_context_bytes.py [--messages 2000]

It prints, per stream, the JSON bytes per message and the payload bytes per message
uncompressed, compressed with context takeover (``deflate``) and without
(``deflate-shared``). Frame headers (2-4 bytes) are the same in every column and left out.
"""

from __future__ import annotations

import argparse
import random
import uuid
from collections.abc import Callable, Iterator

import orjson

from wshub.protocol.extensions.permessage_deflate import PerMessageDeflate

SENTENCES = (
    "the meeting moved to three so we can finish the release notes before lunch if "
    "anyone has seen my charger please ping me thanks again for the review looks good "
    "to me ship it I will be late today the build is green again coffee anyone"
)
WORDS = SENTENCES.split()
NICKS = ["Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Radia"]
SYMBOLS = ["EURUSD", "GBPUSD", "USDJPY", "BTCUSD", "ETHUSD", "AAPL", "MSFT", "NVDA"]


def chat(rng: random.Random) -> Iterator[bytes]:
    """``pub`` pushes of a chat room: short texts from a few users, offsets counting up."""
    epoch = uuid.uuid4().hex[:16]
    clients = {nick: uuid.uuid4().hex for nick in NICKS}
    for offset in range(1, 10**9):
        nick = rng.choice(NICKS)
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 14)))
        yield orjson.dumps(
            {
                "push": "pub",
                "channel": "chat:room1",
                "epoch": epoch,
                "offset": offset,
                "data": {"text": text, "nick": nick},
                "info": {"client": clients[nick], "user": "", "meta": {"nick": nick}},
            }
        )


def ticker(rng: random.Random) -> Iterator[bytes]:
    """``pub`` pushes of a ticker channel: one quote per publication, prices walking."""
    prices = {symbol: rng.uniform(1, 500) for symbol in SYMBOLS}
    epoch = uuid.uuid4().hex[:16]
    for offset in range(1, 10**9):
        symbol = rng.choice(SYMBOLS)
        prices[symbol] *= 1 + rng.gauss(0, 0.0005)
        price = prices[symbol]
        yield orjson.dumps(
            {
                "push": "pub",
                "channel": f"ticker:{symbol}",
                "epoch": epoch,
                "offset": offset,
                "data": {
                    "symbol": symbol,
                    "bid": round(price, 5),
                    "ask": round(price * 1.0001, 5),
                    "ts": 1765000000000 + offset * 250,
                },
            }
        )


def joins(rng: random.Random) -> Iterator[bytes]:
    """``join`` events of a room filling up."""
    while True:
        nick = rng.choice(NICKS) + str(rng.randint(1, 9999))
        yield orjson.dumps(
            {
                "push": "join",
                "channel": "chat:room1",
                "info": {"client": uuid.uuid4().hex, "user": "", "meta": {"nick": nick}},
            }
        )


def server_side(no_context_takeover: bool) -> PerMessageDeflate:
    """The server's compressor as ``server_deflate()`` negotiates it with a browser."""
    return PerMessageDeflate(
        remote_no_context_takeover=False,
        local_no_context_takeover=no_context_takeover,
        remote_max_window_bits=12,
        local_max_window_bits=12,
        mem_level=5,
    )


def measure(stream: Callable[[random.Random], Iterator[bytes]], count: int) -> tuple[float, ...]:
    messages = [m for m, _ in zip(stream(random.Random(7)), range(count), strict=False)]
    takeover, alone = server_side(False), server_side(True)
    raw = sum(map(len, messages))
    with_context = sum(len(takeover.compress(m)) for m in messages)
    without = sum(len(alone.compress(m)) for m in messages)
    return raw / count, with_context / count, without / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per stream")
    args = parser.parse_args()
    print(f"{args.messages} messages per stream; payload bytes per message (12-bit window)\n")
    print("| stream | uncompressed | deflate (context takeover) | deflate-shared (none) |")
    print("|---|---:|---:|---:|")
    for name, stream in (("chat pub", chat), ("ticker pub", ticker), ("join", joins)):
        raw, with_context, without = measure(stream, args.messages)
        print(
            f"| {name} | {raw:.0f} | {with_context:.0f} ({with_context / raw:.0%}) "
            f"| {without:.0f} ({without / raw:.0%}) |"
        )


if __name__ == "__main__":
    main()
