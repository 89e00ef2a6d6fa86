"""Tests for wshub.hub.client.reconnect: when and how soon the client reconnects."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from wshub.exceptions import AuthError, ConnectionClosedError, HubError
from wshub.hub import HubLimits
from wshub.hub.client import Backoff, ClientState, HubClient
from wshub.hub.client.reconnect import close_advice, give_up, why_lost
from wshub.hub.server import HubServer
from wshub.hub.wire import DisconnectAdvice, DisconnectCode

from ..conftest import start_demo_hub
from .conftest import SECRET, Gate, MakeClient, cut_off, server_side, take, token


async def test_reconnect_recovers_missed_publications(make_client: MakeClient) -> None:
    """Publications made while the subscriber was cut off arrive exactly once, in order."""
    gate = Gate()
    reader = await make_client(gate)
    writer = await make_client()
    sub = await reader.subscribe("chat:rec")
    await writer.subscribe("chat:rec")
    offsets = [await writer.publish("chat:rec", n) for n in range(3)]
    assert [p.offset for p in await take(sub, 3)] == offsets

    cut_off(reader, gate)
    offsets += [await writer.publish("chat:rec", n) for n in range(3, 8)]
    gate.open.set()

    pubs = await take(sub, 5)
    assert [p.offset for p in pubs] == offsets[3:]
    assert [p.data for p in pubs] == list(range(3, 8))
    assert sub.recovered is True
    assert reader.reconnects == 1 and sub.statistics().subscribes == 2
    await writer.publish("chat:rec", "live")
    assert (await sub.get()).data == "live"


async def test_server_side_abort_recovers(server: HubServer, make_client: MakeClient) -> None:
    """The hub's side of the TCP connection dropped: same recovery."""
    gate = Gate()
    reader = await make_client(gate)
    writer = await make_client()
    sub = await reader.subscribe("chat:srv")
    await writer.subscribe("chat:srv")
    gate.open.clear()
    server_side(server, reader).transport.abort()
    offsets = [await writer.publish("chat:srv", n) for n in range(4)]
    gate.open.set()
    assert [p.offset for p in await take(sub, 4)] == offsets
    assert sub.recovered is True


@pytest.mark.xfail(
    raises=TimeoutError,
    strict=False,
    reason="known bug, not diagnosed: rarely (seen 1 run in 6 under load, 0 in 37 on a quiet "
    "machine) the client is refused for good after the restart although the new hub logged "
    "that it listens on the port; bounded so that it fails here instead of hanging the run",
)
async def test_hub_restart_changes_epoch(server: HubServer) -> None:
    """The hub restarts with empty memory: the client reconnects and reports the loss."""
    port = server.port
    client = HubClient(server.url(), backoff_initial=0.01, max_delay=0.05)
    await client.connect()
    try:
        sub = await client.subscribe("chat:restart")
        await client.publish("chat:restart", "old")
        assert (await sub.get()).data == "old"
        await server.close()  # 1001 to the client
        async with (
            await start_demo_hub("127.0.0.1", port, ephemeral=True, allow_anonymous=True),
            asyncio.timeout(30),
        ):
            with pytest.raises(HubError) as info:
                await sub.get()
            assert info.value.code == 116 and sub.recovered is False
            assert await client.publish("chat:restart", "new") == 1
            assert (await sub.get()).data == "new"
    finally:
        await client.close()


async def test_too_many_connections_on_reconnect_ends_the_client() -> None:
    """A reconnection refused with 112 (then 4006) is final: calls and iteration raise it."""
    limited = await start_demo_hub(
        "127.0.0.1",
        0,
        ephemeral=True,
        secret=SECRET,
        limits=HubLimits(max_connections_per_user=1),
    )
    try:
        gate = Gate("solo")
        first = HubClient(limited.url(), gate, backoff_initial=0.01)
        await first.connect()
        sub = await first.subscribe("chat:solo")
        old_id = first.client_id
        cut_off(first, gate)
        while any(s.client_id == old_id for s in limited.hub.sessions):
            await asyncio.sleep(0.001)  # until the hub counted the old connection out
        async with HubClient(limited.url(), token("solo")):
            gate.open.set()
            with pytest.raises(HubError) as info:
                await sub.get()
            assert info.value.code == 112
            assert first.closed and first.error is info.value
            with pytest.raises(HubError):
                await first.publish("chat:solo", 1)
    finally:
        await limited.close()


async def test_a_failing_token_source_is_retried(make_client: MakeClient) -> None:
    """The token callable fails once during a reconnection: the client tries again."""
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("token service down")
        return token("flaky")

    client = await make_client(flaky)
    sub = await client.subscribe("chat:flaky")
    assert client.connection is not None and client.connection.transport is not None
    client.connection.transport.abort()
    assert await client.publish("chat:flaky", "back") == 1
    assert (await sub.get()).data == "back"
    assert (calls, client.reconnects) == (3, 1)


# --- how soon: Backoff --------------------------------------------------------------------


class Highest(random.Random):
    """A random source that always draws the top of the interval: the bound itself."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_backoff_bound_doubles_up_to_max_delay() -> None:
    """Without jitter the delays would be initial * 2**n, capped at max_delay."""
    backoff = Backoff(initial=0.5, max_delay=5.0, rng=Highest())
    delays = [backoff.next_delay() for _ in range(8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]
    assert backoff.attempt == 8 and backoff.delays == tuple(delays)


def test_backoff_delays_are_jittered_and_never_exceed_max_delay() -> None:
    """Full jitter: each delay is drawn from [0, bound]; none is above max_delay."""
    backoff = Backoff(initial=0.5, max_delay=5.0, rng=random.Random(8), keep=200)
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0 <= d <= backoff.bound(n) <= 5.0 for n, d in enumerate(delays))
    assert len(set(delays)) == 200  # jittered: no two clients' (or attempts') delays agree
    assert sum(d < 2.5 for d in delays[10:]) > 50  # spread over the whole interval
    assert sum(d > 2.5 for d in delays[10:]) > 50
    assert len(backoff.delays) == 200


def test_backoff_same_seed_same_delays() -> None:
    """An injected seeded random source makes the delays reproducible."""
    first = Backoff(rng=random.Random(3))
    second = Backoff(rng=random.Random(3))
    assert [first.next_delay() for _ in range(10)] == [second.next_delay() for _ in range(10)]


def test_backoff_resets_after_a_success() -> None:
    """After reset() (a connection that worked) the next bound is the initial one again."""
    backoff = Backoff(initial=0.25, max_delay=2.0, rng=Highest())
    for _ in range(6):
        backoff.next_delay()
    assert backoff.attempt == 6
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() == 0.25


def test_backoff_slow_down_waits_between_half_and_all_of_max_delay() -> None:
    """After close code 4005 the delay is drawn from [max_delay / 2, max_delay]."""
    backoff = Backoff(initial=0.1, max_delay=4.0, rng=random.Random(1))
    delays = [backoff.next_delay(slow_down=True) for _ in range(50)]
    assert all(2.0 <= d <= 4.0 for d in delays)


def test_backoff_bound_after_very_many_failures_is_max_delay() -> None:
    """A client that failed for days does not overflow: the bound stays max_delay."""
    backoff = Backoff(initial=0.5, max_delay=5.0)
    assert backoff.bound(5000) == 5.0


@pytest.mark.parametrize(
    "options",
    [{"initial": -1.0}, {"initial": 6.0, "max_delay": 5.0}, {"factor": 0.5}],
)
def test_backoff_refuses_options_that_cannot_work(options: dict[str, float]) -> None:
    """A negative, inverted or shrinking backoff fails at construction."""
    with pytest.raises(ValueError, match="max_delay"):
        Backoff(**options)


def test_client_defaults_cap_the_delay_at_five_seconds() -> None:
    """HubClient's documented defaults: 0.5 s first bound, doubling, at most 5 s."""
    backoff = HubClient("ws://127.0.0.1:1/ws").backoff
    assert (backoff.initial, backoff.factor, backoff.max_delay) == (0.5, 2.0, 5.0)


# --- whether: the close-code table --------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (None, DisconnectAdvice(reconnect=True)),
        (1001, DisconnectAdvice(reconnect=True)),
        (1006, DisconnectAdvice(reconnect=True)),
        (1011, DisconnectAdvice(reconnect=True)),
        (DisconnectCode.BAD_COMMANDS, DisconnectAdvice(reconnect=False)),
        (DisconnectCode.UNAUTHORIZED, DisconnectAdvice(reconnect=True, new_token=True)),
        (DisconnectCode.CONNECT_TIMEOUT, DisconnectAdvice(reconnect=True)),
        (DisconnectCode.TOKEN_EXPIRED, DisconnectAdvice(reconnect=True, new_token=True)),
        (DisconnectCode.SLOW_CONSUMER, DisconnectAdvice(reconnect=True)),
        (DisconnectCode.RATE_LIMITED, DisconnectAdvice(reconnect=True, slow_down=True)),
        (DisconnectCode.TOO_MANY_CONNECTIONS, DisconnectAdvice(reconnect=False)),
        (DisconnectCode.UNSUPPORTED_SUBPROTOCOL, DisconnectAdvice(reconnect=False)),
    ],
)
def test_close_advice_follows_the_table(code: int | None, advice: DisconnectAdvice) -> None:
    """Each hub close code says whether to reconnect, with a new token, after a long wait."""
    assert close_advice(code) == advice


def test_give_up_only_when_a_retry_cannot_help() -> None:
    """Token codes end a client with a fixed token but not one with a token callable."""
    expired = give_up(None, DisconnectCode.TOKEN_EXPIRED, connected_once=True, renewable=False)
    assert isinstance(expired, AuthError) and expired.code == 113
    assert give_up(None, DisconnectCode.TOKEN_EXPIRED, connected_once=True, renewable=True) is None
    fatal = give_up(None, DisconnectCode.BAD_COMMANDS, connected_once=True, renewable=True)
    assert isinstance(fatal, ConnectionClosedError) and fatal.code == 4000
    assert give_up(None, 1001, connected_once=True, renewable=False) is None
    first = give_up(None, 1001, connected_once=False, renewable=False)
    assert isinstance(first, ConnectionClosedError) and first.code == 1001


# --- an outage of a real hub --------------------------------------------------------------


async def wait_for(predicate: Callable[[], bool]) -> None:
    """Yield to the loop until ``predicate()`` holds (the test timeout bounds it)."""
    while not predicate():
        await asyncio.sleep(0.002)


async def test_client_comes_back_within_max_delay_after_a_hub_outage(server: HubServer) -> None:
    """Hub stopped, then restarted on its port: every delay <= max_delay, one wait after.

    Calls made during the outage wait and complete on the new connection; the backoff
    starts again from its first bound once the client is connected.
    """
    port = server.port
    max_delay = 0.08
    client = HubClient(
        server.url(), backoff_initial=0.005, max_delay=max_delay, rng=random.Random(5)
    )
    await client.connect()
    try:
        await client.subscribe("chat:outage")
        await server.close()  # 1001, then every attempt is refused
        await wait_for(lambda: client.backoff.attempt >= 8)  # the bound reached the cap
        assert client.state in (ClientState.WAITING, ClientState.CONNECTING)
        waiting = asyncio.ensure_future(client.publish("chat:outage", "during"))
        async with await start_demo_hub("127.0.0.1", port, ephemeral=True, allow_anonymous=True):
            failed_before_restart = client.backoff.attempt
            assert await waiting == 1  # sent once the client is back (a new, empty hub)
            assert client.reconnects == 1 and client.state is ClientState.CONNECTED
            delays = client.backoff.delays
            # The hub was listening from here on: at most the delay being waited (and one
            # attempt already on its way when it came up) stood between it and the client.
            assert len(delays) - failed_before_restart <= 1
            assert all(0 <= d <= max_delay for d in delays)
            assert max(delays[4:]) > min(delays[4:])  # jittered, not a fixed schedule
            assert client.backoff.attempt == 0  # reset by the successful connection
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("failure", "code", "reason", "says"),
    [
        (HubError(103, "invalid token"), None, None, "connect refused"),
        (TimeoutError(), None, None, "no reply to connect within 10.0 s"),
        (OSError("boom"), None, None, "connecting failed (OSError: boom)"),
        (None, 1001, "going away", "connection lost (close code 1001 going away)"),
        (ConnectionClosedError(1006, ""), 1006, "", "connection lost (close code 1006)"),
    ],
)
def test_why_lost_names_the_cause(
    failure: BaseException | None, code: int | None, reason: str | None, says: str
) -> None:
    """The reconnect warning says what happened: refused, timed out, failed, or lost."""
    assert why_lost(failure, code, reason, 10.0).startswith(says)
