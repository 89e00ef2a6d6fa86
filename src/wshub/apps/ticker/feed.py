"""The simulated price feed of the ticker demo: a random walk published into the hub.

A backend that pushes data to browsers, the way the hub is meant to be used: the feed knows
nothing about WebSockets; it publishes to channels, in the hub's process (:class:`HubPublisher`
on :meth:`Hub.publish <wshub.hub.Hub.publish>`) or from anywhere over the HTTP API
(:class:`HttpPublisher`, ``POST /api/publish``). ``wshub serve`` runs it in process;
``wshub feed --url URL --api-key KEY`` runs it as a separate process.

The channels (docs/ticker.md):

* ``ticker:<SYMBOL>`` — one channel per instrument; each publication is a :class:`Tick`
  (``{"symbol", "price", "open"}``). One channel each, because the ``ticker`` namespace
  keeps the newest publication per channel: its history (size 1) is the current price, and
  its ``latest`` slow-consumer policy conflates a lagging subscriber's queue to the newest
  price *of each instrument*.
* ``ticker:index`` — a :class:`Snapshot` every ``sample_interval`` seconds: the instruments
  and their sampled prices over the last ``window`` seconds. A page loads the list and the
  recent minutes of every chart from it (history size 1 is enough: it is the newest).

Ticks follow a fixed schedule, ``rate`` per second from the start; a feed that falls behind
(a slow hub) skips ahead rather than bursting, so there are never more than
``rate * elapsed + 1`` ticks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

from wshub.exceptions import HubError, InvalidResponse
from wshub.hub import Hub
from wshub.protocol.http11 import Request, ResponseParser

__all__ = [
    "DEFAULT_INSTRUMENTS",
    "INDEX_CHANNEL",
    "MAX_INSTRUMENTS",
    "HttpPublisher",
    "HubPublisher",
    "Instrument",
    "PriceFeed",
    "Publisher",
    "Snapshot",
    "Tick",
    "run_http_feed",
]

logger = logging.getLogger("wshub.hub")

#: The channel of the :class:`Snapshot` publications (lowercase: no symbol can take it).
INDEX_CHANNEL = "ticker:index"
#: Most instruments of a feed: a page subscribes to each of them plus the index, within the
#: hub's default ``max_channels`` (128), and a snapshot stays well under the hub's 64 KiB
#: ``max_publication_size``.
MAX_INSTRUMENTS = 100
#: Most sampled prices per instrument in a snapshot (same reason).
MAX_SAMPLES = 120

_SYMBOL_RE = re.compile(r"[A-Z][A-Z0-9]{0,7}")


def _number(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{key} must be a positive number")
    return float(value)


def _symbol(data: dict[str, Any]) -> str:
    value = data.get("symbol")
    if not isinstance(value, str) or _SYMBOL_RE.fullmatch(value) is None:
        raise ValueError("symbol must be 1-8 uppercase letters or digits, a letter first")
    return value


def _object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object")
    return data


@dataclass(frozen=True, slots=True)
class Instrument:
    """One instrument of the feed.

    Attributes:
        symbol: 1 to 8 uppercase letters or digits, a letter first (its channel is
            ``ticker:<symbol>``).
        name: what the page shows next to the symbol.
        open: the reference price: the change shown is measured from it.
        volatility: the standard deviation of one tick's log return.
    """

    symbol: str
    name: str
    open: float
    volatility: float = 0.002

    def __post_init__(self) -> None:
        _symbol({"symbol": self.symbol})
        if not self.name or len(self.name) > 64:
            raise ValueError("name must have 1 to 64 characters")
        _number({"open": self.open}, "open")
        if not 0 < self.volatility < 0.1:
            raise ValueError("volatility must be between 0 and 0.1")

    @property
    def channel(self) -> str:
        """The instrument's channel."""
        return f"ticker:{self.symbol}"


@dataclass(frozen=True, slots=True)
class Tick:
    """A new price: the data of a ``ticker:<SYMBOL>`` publication.

    Attributes:
        symbol: the instrument.
        price: the new price, rounded to the cent.
        open: the instrument's reference price.
    """

    symbol: str
    price: float
    open: float

    def __post_init__(self) -> None:
        self.parse(self.serialize())

    @property
    def channel(self) -> str:
        """The channel the tick is published to."""
        return f"ticker:{self.symbol}"

    def serialize(self) -> dict[str, Any]:
        """The publication's data."""
        return {"symbol": self.symbol, "price": self.price, "open": self.open}

    @classmethod
    def parse(cls, data: Any) -> Tick:
        """Read a publication's data.

        Raises:
            ValueError: ``data`` is not a tick.
        """
        data = _object(data, "a tick")
        tick = object.__new__(cls)
        for name, value in (
            ("symbol", _symbol(data)),
            ("price", _number(data, "price")),
            ("open", _number(data, "open")),
        ):
            object.__setattr__(tick, name, value)
        return tick


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The instruments and their recent prices: the data of a ``ticker:index`` publication.

    Attributes:
        time: when the newest sample was taken, milliseconds since the Unix epoch.
        interval: seconds between two samples.
        instruments: the instruments, in display order.
        series: the sampled prices of each instrument (same order), oldest first; the
            last one was taken at ``time``.
    """

    time: int
    interval: float
    instruments: tuple[Instrument, ...]
    series: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        if len(self.series) != len(self.instruments):
            raise ValueError("one series per instrument")
        if not 0 < len(self.instruments) <= MAX_INSTRUMENTS:
            raise ValueError(f"a snapshot has 1 to {MAX_INSTRUMENTS} instruments")
        if any(len(points) > MAX_SAMPLES for points in self.series):
            raise ValueError(f"a series has at most {MAX_SAMPLES} samples")
        if len({i.symbol for i in self.instruments}) != len(self.instruments):
            raise ValueError("symbols must be unique")
        if not self.interval > 0 or self.time < 0:
            raise ValueError("interval must be > 0 and time >= 0")

    def serialize(self) -> dict[str, Any]:
        """The publication's data."""
        return {
            "time": self.time,
            "interval": self.interval,
            "instruments": [
                {"symbol": i.symbol, "name": i.name, "open": i.open, "series": list(points)}
                for i, points in zip(self.instruments, self.series, strict=True)
            ],
        }

    @classmethod
    def parse(cls, data: Any) -> Snapshot:
        """Read a publication's data.

        Raises:
            ValueError: ``data`` is not a snapshot.
        """
        data = _object(data, "a snapshot")
        entries = data.get("instruments")
        if not isinstance(entries, list):
            raise ValueError("instruments must be a list")
        instruments, series = [], []
        for entry in entries:
            entry = _object(entry, "an instrument")
            name, points = entry.get("name"), entry.get("series")
            if not isinstance(name, str) or not isinstance(points, list):
                raise ValueError("an instrument needs a name and a series")
            instruments.append(Instrument(_symbol(entry), name, _number(entry, "open")))
            series.append(tuple(_number({"p": p}, "p") for p in points))
        when, interval = data.get("time"), data.get("interval")
        if not isinstance(when, int) or isinstance(when, bool):
            raise ValueError("time must be an integer")
        return cls(
            when, _number({"interval": interval}, "interval"), tuple(instruments), tuple(series)
        )


class Publisher(Protocol):
    """Where the feed publishes: the hub in process, or the HTTP API of a hub."""

    async def publish(self, channel: str, data: Any) -> int:
        """Publish ``data`` to ``channel``; return the publication's offset.

        Raises:
            HubError: the hub refused the publication.
            OSError: the hub cannot be reached.
        """
        ...


class HubPublisher:
    """Publishes with :meth:`Hub.publish <wshub.hub.Hub.publish>` in the hub's own process."""

    def __init__(self, hub: Hub) -> None:
        """Publish into ``hub``."""
        self.hub = hub

    async def publish(self, channel: str, data: Any) -> int:
        """See :meth:`Publisher.publish`."""
        result = await self.hub.publish(channel, data)
        return result.position.offset


class HttpPublisher:
    """Publishes through a hub's HTTP API (``POST /api/publish``, docs/http-api.md).

    One request per publication, each on its own connection (the hub answers one request
    per connection), so a hub restart costs nothing but the publications made meanwhile.
    """

    def __init__(self, url: str, api_key: str, *, timeout: float = 10.0) -> None:
        """Check the URL; nothing is sent yet.

        Args:
            url: the hub's base URL, ``http://host:port`` (a path prefix is kept:
                ``http://host/hub`` posts to ``/hub/api/publish``).
            api_key: the hub's API key.
            timeout: seconds one publication may take, connection included.

        Raises:
            ValueError: the URL is not an ``http://`` URL with a host, or the key is empty.
        """
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"the hub URL must look like http://HOST:PORT, not {url!r}")
        try:
            port = parts.port or 80
        except ValueError:
            raise ValueError(f"the hub URL has an invalid port: {url!r}") from None
        if not api_key or any(c in api_key for c in "\r\n"):
            raise ValueError("the API key must be a non-empty single line")
        self.host, self.port = parts.hostname, port
        self.path = parts.path.rstrip("/") + "/api/publish"
        self.netloc = parts.netloc
        self.api_key = api_key
        self.timeout = timeout

    async def publish(self, channel: str, data: Any) -> int:
        """See :meth:`Publisher.publish`."""
        body = orjson.dumps({"channel": channel, "data": data})
        request = Request(
            "POST",
            self.path,
            [
                ("Host", self.netloc),
                ("Authorization", f"Bearer {self.api_key}"),
                ("Content-Type", "application/json"),
                ("Connection", "close"),
            ],
            body,
        )
        async with asyncio.timeout(self.timeout):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                writer.write(request.serialize())
                parser, response = ResponseParser(), None
                while response is None:
                    data_in = await reader.read(65536)
                    if not data_in:
                        raise ConnectionError("the hub closed the connection before answering")
                    response = parser.feed(data_in)
            except InvalidResponse as exc:
                raise ConnectionError(f"not a hub's answer: {exc}") from exc
            finally:
                writer.close()
        try:
            answer = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            answer = None
        if response.status == 200 and isinstance(answer, dict):
            return int(answer["offset"])
        error = answer.get("error") if isinstance(answer, dict) else None
        if isinstance(error, dict):
            raise HubError(int(error.get("code", 100)), str(error.get("message")), channel=channel)
        raise HubError(100, f"HTTP {response.status} from {self.path}", channel=channel)


#: Sixty made-up companies: (symbol, name, opening price).
_COMPANIES = (
    ("ACME", "Acme Corporation", 128.40),
    ("ALTA", "Altamira Foods", 42.15),
    ("AMBR", "Amber Grid Energy", 77.80),
    ("APEX", "Apex Robotics", 231.05),
    ("AQUA", "Aquafin Water", 18.62),
    ("ARCL", "Arclight Media", 54.90),
    ("ASTR", "Astra Logistics", 96.33),
    ("BLUE", "Bluewave Telecom", 33.48),
    ("BOLT", "Bolt Mobility", 12.07),
    ("BRIX", "Brixton Materials", 61.25),
    ("CASK", "Cask & Barrel", 24.75),
    ("CEDR", "Cedar Health", 143.60),
    ("CIRR", "Cirrus Cloud", 312.90),
    ("COBL", "Cobalt Mining", 48.11),
    ("CRUX", "Crux Semiconductors", 402.75),
    ("DLTA", "Delta Freight", 67.20),
    ("DUNE", "Dune Solar", 29.95),
    ("ECHO", "Echo Audio", 15.40),
    ("EMBR", "Ember Foods", 38.72),
    ("FERN", "Fernwood Pharma", 88.05),
    ("FLUX", "Flux Batteries", 156.30),
    ("GALE", "Gale Wind Power", 22.64),
    ("GLYF", "Glyph Software", 189.45),
    ("GRNT", "Granite Bank", 51.80),
    ("HALO", "Halo Optics", 73.19),
    ("HRBR", "Harbor Shipping", 35.55),
    ("IONX", "Ionix Materials", 119.90),
    ("IRIS", "Iris Biotech", 64.37),
    ("JADE", "Jade Textiles", 19.28),
    ("JOLT", "Jolt Beverages", 27.66),
    ("KITE", "Kite Aerospace", 248.10),
    ("KOVA", "Kova Insurance", 58.44),
    ("LARK", "Lark Travel", 31.09),
    ("LUMN", "Lumen Lighting", 45.73),
    ("MAPL", "Maple Retail", 82.50),
    ("MERI", "Meridian Rail", 101.15),
    ("MOSS", "Moss Agritech", 16.83),
    ("NOVA", "Nova Games", 137.22),
    ("NRTH", "Northstar Energy", 69.40),
    ("OAKR", "Oakridge Homes", 93.65),
    ("ONYX", "Onyx Security", 212.35),
    ("OPAL", "Opal Cosmetics", 40.18),
    ("PINE", "Pine Paper", 13.94),
    ("PLSM", "Plasma Labs", 274.80),
    ("QUIL", "Quill Publishing", 21.47),
    ("RAVN", "Raven Analytics", 165.90),
    ("REEF", "Reef Seafood", 26.31),
    ("RIDG", "Ridgeline Outdoor", 57.06),
    ("SAGE", "Sage Education", 49.99),
    ("SLTE", "Slate Networks", 84.27),
    ("SPRK", "Spark Payments", 118.64),
    ("TIDE", "Tidewater Utilities", 71.12),
    ("TRAX", "Trax Automotive", 36.58),
    ("UMBR", "Umbra Defense", 295.40),
    ("VALE", "Vale Vineyards", 44.86),
    ("VRTX", "Vertex Cloud", 351.20),
    ("WREN", "Wren Apparel", 23.39),
    ("XENO", "Xeno Genomics", 132.75),
    ("YARD", "Yardbird Tools", 52.63),
    ("ZEST", "Zest Kitchens", 28.17),
)


def _default_instruments() -> tuple[Instrument, ...]:
    # Volatilities spread between 0.1% and 0.5% per tick, fixed so the demo looks the same.
    return tuple(
        Instrument(symbol, name, price, 0.001 + 0.004 * ((index * 37) % 60) / 60)
        for index, (symbol, name, price) in enumerate(_COMPANIES)
    )


#: The demo's instruments.
DEFAULT_INSTRUMENTS = _default_instruments()


class PriceFeed:
    """A random walk of prices, published as ticks and periodic snapshots.

    Each tick moves one instrument, picked at random, by a log-normal step of its
    volatility, rounded to the cent.
    """

    def __init__(
        self,
        instruments: Sequence[Instrument] = DEFAULT_INSTRUMENTS,
        *,
        rate: float = 20.0,
        sample_interval: float = 5.0,
        window: float = 300.0,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Set the instruments and the pace.

        Args:
            instruments: what to publish (1 to :data:`MAX_INSTRUMENTS`, unique symbols).
            rate: ticks per second, all instruments together (default 20: each of the 60
                demo instruments moves every 3 seconds on average).
            sample_interval: seconds between two snapshots on ``ticker:index``.
            window: seconds of samples a snapshot carries (at most :data:`MAX_SAMPLES`
                samples).
            seed: makes the walk reproducible.
            clock: monotonic seconds, for the schedule (tests pass a fake one).
            sleep: waits that many seconds of ``clock`` (tests pass a fake one).
            wall_clock: seconds since the Unix epoch, for the snapshots' ``time``.

        Raises:
            ValueError: an argument is out of range.
        """
        if not 0 < len(instruments) <= MAX_INSTRUMENTS:
            raise ValueError(f"a feed has 1 to {MAX_INSTRUMENTS} instruments")
        if len({i.symbol for i in instruments}) != len(instruments):
            raise ValueError("symbols must be unique")
        if not (0 < rate <= 10_000):
            raise ValueError("rate must be > 0 and at most 10000 ticks per second")
        if not sample_interval > 0 or not window >= sample_interval:
            raise ValueError("sample_interval must be > 0 and window >= sample_interval")
        if window / sample_interval > MAX_SAMPLES:
            raise ValueError(f"window / sample_interval must be at most {MAX_SAMPLES}")
        self.instruments = tuple(instruments)
        self.rate = rate
        self.sample_interval = sample_interval
        self.prices = {i.symbol: i.open for i in self.instruments}
        self.ticks = 0
        self._samples = {
            i.symbol: deque[float](maxlen=int(window / sample_interval) + 1)
            for i in self.instruments
        }
        self._random = random.Random(seed)
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock

    def step(self) -> Tick:
        """Move one instrument and return its tick."""
        instrument = self._random.choice(self.instruments)
        move = math.exp(self._random.gauss(0.0, instrument.volatility))
        price = max(0.01, round(self.prices[instrument.symbol] * move, 2))
        self.prices[instrument.symbol] = price
        self.ticks += 1
        return Tick(instrument.symbol, price, instrument.open)

    def sample(self) -> Snapshot:
        """Record every current price as a sample and return the snapshot."""
        for symbol, price in self.prices.items():
            self._samples[symbol].append(price)
        return Snapshot(
            int(self._wall_clock() * 1000),
            self.sample_interval,
            self.instruments,
            tuple(tuple(self._samples[i.symbol]) for i in self.instruments),
        )

    async def publish_all(self, publisher: Publisher) -> None:
        """Publish a snapshot, then every instrument's current price (the starting state).

        Raises:
            HubError, OSError: from the publisher.
        """
        await publisher.publish(INDEX_CHANNEL, self.sample().serialize())
        for instrument in self.instruments:
            price = self.prices[instrument.symbol]
            tick = Tick(instrument.symbol, price, instrument.open)
            await publisher.publish(tick.channel, tick.serialize())

    async def run(self, publisher: Publisher, *, ticks: int | None = None) -> None:
        """Publish ticks at ``rate`` and a snapshot every ``sample_interval``, until cancelled.

        Publications the hub refuses or cannot take (it is restarting) are logged and
        skipped: the next ones go out as soon as it is back.

        Args:
            publisher: where to publish.
            ticks: stop after that many ticks (``None``: run until cancelled).
        """
        interval = 1.0 / self.rate
        start = self._clock()
        next_tick = next_sample = start
        published = 0
        failing = False
        while ticks is None or published < ticks:
            now = self._clock()
            if now >= next_sample:
                failing = await self._send(publisher, INDEX_CHANNEL, self.sample(), failing)
                next_sample = max(next_sample + self.sample_interval, now)
                continue
            if now < next_tick:
                await self._sleep(min(next_tick, next_sample) - now)
                continue
            tick = self.step()
            failing = await self._send(publisher, tick.channel, tick, failing)
            published += 1
            # Never burst to catch up: a feed that fell a whole interval behind skips ahead.
            next_tick = max(next_tick + interval, self._clock() - interval)

    async def _send(
        self, publisher: Publisher, channel: str, value: Tick | Snapshot, failing: bool
    ) -> bool:
        """Publish; log the first failure of a streak and the recovery. Returns ``failing``."""
        try:
            await publisher.publish(channel, value.serialize())
        except (HubError, OSError, TimeoutError) as exc:
            if not failing:
                logger.warning("ticker feed: publishing failed (%s); retrying", exc)
            return True
        if failing:
            logger.info("ticker feed: publishing again")
        return False


async def run_http_feed(
    url: str,
    api_key: str,
    *,
    rate: float = 20.0,
    seed: int | None = None,
    instruments: Sequence[Instrument] = DEFAULT_INSTRUMENTS,
) -> None:
    """Run the feed against a hub's HTTP API until cancelled (``wshub feed``).

    The starting state (a snapshot and every price) is published first, and a failure
    there is raised, so that a wrong URL or key stops the feed at once; later failures
    (the hub restarts) are logged and the feed goes on.

    Args:
        url: the hub's base URL (see :class:`HttpPublisher`).
        api_key: the hub's API key.
        rate: ticks per second.
        seed: makes the random walk reproducible.
        instruments: what to publish.

    Raises:
        ValueError: a bad URL, key or rate.
        HubError: the hub refused the first publications (a wrong key: 103).
        OSError: the hub cannot be reached.
    """
    publisher = HttpPublisher(url, api_key)
    feed = PriceFeed(instruments, rate=rate, seed=seed)
    await feed.publish_all(publisher)
    logger.info("ticker feed: %d instruments, %g ticks/s, to %s", len(feed.instruments), rate, url)
    await feed.run(publisher)
