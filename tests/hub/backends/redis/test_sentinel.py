"""The hub on a Redis watched by Sentinel: real redis-server and redis-sentinel processes.

Each test that fails over starts its own group (:func:`wshub.testing.sentinel_group`: a
master, a replica, three sentinels with a one-second down-after), two hub nodes on its
``redis+sentinel://`` URL, and real HubClients over loopback. While a client publishes
continuously, with a message id per publication and retrying on error 100 as any client
would, the master changes (``SENTINEL FAILOVER``, or ``kill -9`` of the master); then the
check is that every publication the hub acknowledged was delivered to the subscriber or
reported to it as an explicit gap (error 116), never lost silently, and that publishing
works again on the new master without restarting anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from wshub.cli import main
from wshub.exceptions import ConfigError, HubError
from wshub.hub import ChannelRegistry, HubLimits, NamespaceOptions
from wshub.hub.backends.redis import describe_url
from wshub.hub.client import HubClient, Subscription
from wshub.hub.config import HubConfig, RedisStorage
from wshub.hub.config_file import read_file
from wshub.hub.redis_url import SentinelURL
from wshub.hub.server import HubServer
from wshub.testing import SentinelGroup, redis_server, sentinel_available, sentinel_group

from ...conftest import start_demo_hub

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(not sentinel_available(), reason="redis-sentinel is not installed"),
]
# Each group takes seconds of real time to start and fail over; one event loop shows it.
one_loop = pytest.mark.asyncio(loop_factories=["asyncio"])

REGISTRY = ChannelRegistry(
    {"room": NamespaceOptions(history_size=10_000, presence=True, join_leave=True)}
)


#: What docs/deployment.md advises for Sentinel: a master refuses writes while no replica
#: follows it (so a demoted master still running stops accepting at once), and two
#: replicas (so that the new master has one as soon as the sentinels reconfigure it).
PRODUCTION = ["--min-replicas-to-write", "1", "--min-replicas-max-lag", "2"]


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    with sentinel_group(replicas=2, server_options=PRODUCTION) as running:
        yield running


@contextlib.asynccontextmanager
async def nodes(url: str, count: int = 2) -> AsyncIterator[list[HubServer]]:
    servers: list[HubServer] = []
    try:
        for _ in range(count):
            servers.append(
                await start_demo_hub(
                    "127.0.0.1",
                    0,
                    redis_url=url,
                    allow_anonymous=True,
                    anonymous_permissions=("room:*:spr",),
                    registry=REGISTRY,
                    limits=HubLimits(command_rate=None, publish_rate=None),
                    compression=None,
                )
            )
        yield servers
    finally:
        for server in servers:
            await server.close()


def client(server: HubServer) -> HubClient:
    return HubClient(server.url(), backoff_initial=0.01, max_delay=0.2, compression=None)


# --- the URL ------------------------------------------------------------------------------


def test_sentinel_urls_are_read_in_their_one_form_and_shown_without_passwords() -> None:
    """Several sentinels, default port, IPv6, credentials, db; errors name what is wrong."""
    url = SentinelURL.parse("redis+sentinel://app:s%40cret@a:1,b,[::1]:3/mymaster/2")
    assert url == SentinelURL(
        sentinels=(("a", 1), ("b", 26379), ("::1", 3)),
        service="mymaster",
        db=2,
        username="app",
        password="s@cret",
    )
    assert SentinelURL.parse(url.serialize()) == url
    assert SentinelURL.parse("redis+sentinel://:pw@h:5/m").password == "pw"
    assert SentinelURL.parse("redis+sentinel://h:5/m") == SentinelURL((("h", 5),), "m")
    shown = describe_url("redis+sentinel://:pw@h:5,k:6/m/1")
    assert shown == "redis+sentinel://h:5,k:6/m/1"
    for bad, why in [
        ("redis://h/m", "not a redis"),
        ("redis+sentinel://h:5", "no service name"),
        ("redis+sentinel://h:5/", "no service name"),
        ("redis+sentinel:///m", "no sentinel"),
        ("redis+sentinel://h:x/m", "bad sentinel port"),
        ("redis+sentinel://h:70000/m", "bad sentinel port"),
        ("redis+sentinel://[::1/m", "bad sentinel address"),
        ("redis+sentinel://h:1:2/m", "bad sentinel address"),
        ("redis+sentinel://h/m/x", "bad database number"),
        ("redis+sentinel://h/m?db=1", "no query"),
    ]:
        with pytest.raises(ValueError, match=why):
            SentinelURL.parse(bad)


def test_the_storage_config_checks_sentinel_urls_and_redacts_both_passwords(
    tmp_path: Path,
) -> None:
    """RedisStorage.url names the field; sentinel_password only with a sentinel URL; the
    file form sentinel_password_file; neither password shown by serialize()."""
    with pytest.raises(ConfigError, match=r"url: no service name"):
        RedisStorage(url="redis+sentinel://h:1")
    with pytest.raises(ConfigError, match=r"sentinel_password: only with a redis\+sentinel"):
        RedisStorage(url="redis://h:1/0", sentinel_password="x")
    storage = RedisStorage(url="redis+sentinel://:master-pw@h:1/m", sentinel_password="s-pw")
    shown = HubConfig(storage=storage).serialize()["storage"]
    assert "master-pw" not in str(shown) and "s-pw" not in str(shown)
    assert shown["url"] == "redis+sentinel://:<redacted>@h:1/m"
    secret = tmp_path / "sentinel-pw"
    secret.write_text("from-file\n")
    config = tmp_path / "hub.toml"
    config.write_text(
        '[storage]\nkind = "redis"\nurl = "redis+sentinel://h:1/m"\n'
        f'sentinel_password_file = "{secret}"\n'
    )
    parsed = HubConfig.parse(read_file(config))
    assert parsed.storage == RedisStorage(
        url="redis+sentinel://h:1/m", sentinel_password="from-file"
    )


# --- wshub serve at start -----------------------------------------------------------------


def test_serve_with_a_wrong_service_name_is_one_error_line_with_status_2(
    group: SentinelGroup, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sentinels answer but monitor no such master: a configuration error."""
    url = group.url().replace(f"/{group.service}/", "/no-such-service/")
    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", "0", "--redis", url])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("wshub: error: storage: no sentinel at redis+sentinel://")
    assert "'no-such-service'" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_serve_with_unreachable_sentinels_is_one_error_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No sentinel answers: like an unreachable Redis, one line and status 1."""
    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", "0", "--redis", "redis+sentinel://:pw@127.0.0.1:1/m"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("wshub: error: cannot reach any sentinel at redis+sentinel://127.0.0.1:1")
    assert "pw" not in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_serve_refuses_a_redis_in_cluster_mode(capsys: pytest.CaptureFixture[str]) -> None:
    """Redis Cluster is unsupported (docs/deployment.md): said at start, status 2."""
    with (
        redis_server(options=["--cluster-enabled", "yes"]) as server,
        pytest.raises(SystemExit) as info,
    ):
        main(["serve", "--port", "0", "--redis", server.url])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wshub: error: storage: the Redis at {server.url} runs in cluster mode")
    assert "Traceback" not in err and len(err.splitlines()) == 1


# --- through the sentinels ----------------------------------------------------------------


@one_loop
async def test_history_presence_and_fan_out_work_through_the_sentinels(
    group: SentinelGroup,
) -> None:
    async with nodes(group.url()) as (a, b), client(a) as reader, client(b) as writer:
        sub = await reader.subscribe("room:x")
        await writer.subscribe("room:x")
        offsets = [await writer.publish("room:x", {"n": i}) for i in range(5)]
        assert offsets == [1, 2, 3, 4, 5]
        assert [(p.offset, p.data) for p in [await sub.get() for _ in range(5)]] == [
            (i + 1, {"n": i}) for i in range(5)
        ]
        history = await reader.history("room:x", limit=10)
        assert [p.data for p in history.publications] == [{"n": i} for i in range(5)]
        presence = await writer.presence("room:x")
        assert len(presence) == 2
        # The data is in the master the sentinels name.
        master = group.master()
        assert master == group.servers[0]


@dataclass
class Tally:
    """What a publisher had acknowledged and what a subscriber saw."""

    acked: dict[str, int] = field(default_factory=dict)  # message id -> offset
    acked_after_failover: set[str] = field(default_factory=set)
    retries: int = 0
    delivered: list[tuple[str, int, str]] = field(default_factory=list)  # epoch, offset, id
    gaps: int = 0
    errors: list[HubError] = field(default_factory=list)  # other than 116
    in_history: set[str] = field(default_factory=set)  # ids in Redis at the end

    def ids(self) -> set[str]:
        return {mid for _, _, mid in self.delivered}

    def report(self) -> str:
        delivered = self.ids()
        lost = set(self.acked) - delivered
        return (
            f"acked={len(self.acked)} (after the failover {len(self.acked_after_failover)}) "
            f"retries={self.retries} delivered={len(self.delivered)} "
            f"distinct={len(delivered)} explicit_gaps={self.gaps} "
            f"acked_not_delivered={len(lost)} "
            f"acked_lost_by_redis={len(set(self.acked) - self.in_history)} "
            f"other_errors={self.errors}"
        )


async def publish_continuously(
    writer: HubClient, tally: Tally, stop: asyncio.Event, failed_over: asyncio.Event
) -> None:
    """Publish ``m0, m1, ...`` until ``stop``; a refused publish is retried with its id."""
    index = 0
    while not stop.is_set():
        mid = f"m{index}"
        while True:
            try:
                tally.acked[mid] = await writer.publish("room:f", mid, message_id=mid)
                break
            except HubError as exc:
                assert exc.code == 100, exc  # Redis unavailable: temporary, retry
                tally.retries += 1
                await asyncio.sleep(0.05)
        if failed_over.is_set():
            tally.acked_after_failover.add(mid)
        index += 1
        await asyncio.sleep(0.002)


async def read_continuously(sub: Subscription, tally: Tally) -> None:
    while True:
        try:
            pub = await sub.get()
        except HubError as exc:
            if exc.code != 116:
                tally.errors.append(exc)
                raise
            tally.gaps += 1
            continue
        tally.delivered.append((pub.epoch, pub.offset, pub.data))


async def wait_for(condition: Callable[[], bool], seconds: float) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)


@one_loop
@pytest.mark.parametrize(
    "how",
    [
        "sentinel failover",
        "kill -9 of the master",
    ],
)
async def test_acknowledged_publications_survive_a_failover_or_are_reported_lost(
    group: SentinelGroup, how: str
) -> None:
    """acked is within delivered + explicitly gapped, and publishing resumes on the new master."""
    tally = Tally()
    stop, failed_over = asyncio.Event(), asyncio.Event()
    async with nodes(group.url()) as (a, b), client(a) as reader, client(b) as writer:
        sub = await reader.subscribe("room:f")
        await writer.subscribe("room:f")
        reading = asyncio.create_task(read_continuously(sub, tally))
        publishing = asyncio.create_task(publish_continuously(writer, tally, stop, failed_over))
        await wait_for(lambda: len(tally.acked) >= 100, 30)
        old = group.master()
        if how == "sentinel failover":
            new = await asyncio.to_thread(group.failover)
        else:
            killed = await asyncio.to_thread(group.kill_master)
            assert killed == old
            new = await asyncio.to_thread(group.wait_for_new_master, old)
        assert new != old
        failed_over.set()
        await wait_for(lambda: len(tally.acked_after_failover) >= 100, 60)
        stop.set()
        await publishing
        assert len(tally.acked_after_failover) >= 100, tally.report()
        # A subscriber learns of a gap at the next publication: the last one is a marker.
        await writer.publish("room:f", "end", message_id="end")
        await wait_for(lambda: "end" in tally.ids(), 30)
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        page = await reader.history("room:f", limit=10_000)
        tally.in_history = {pub.data for pub in page.publications}
        print(f"{how}: {tally.report()}")
        delivered = tally.ids()
        assert "end" in delivered, tally.report()
        lost = set(tally.acked) - delivered
        # Whatever was lost was reported as a gap; nothing is lost silently.
        assert not lost or tally.gaps > 0, f"{how}: silent loss of {sorted(lost)[:10]}: " + (
            tally.report()
        )
        # Everything acknowledged after the failover reached the subscriber.
        assert tally.acked_after_failover <= delivered, tally.report()
        # In order, each offset once, within each epoch; a new epoch only with a gap told.
        epochs = list(dict.fromkeys(epoch for epoch, _, _ in tally.delivered))
        assert len(epochs) <= tally.gaps + 1, tally.report()
        for epoch in epochs:
            offsets = [offset for e, offset, _ in tally.delivered if e == epoch]
            assert offsets == sorted(set(offsets)), tally.report()


def test_the_group_helpers_kill_and_restart_a_server_that_rejoins_as_a_replica(
    group: SentinelGroup,
) -> None:
    """What the chaos suite uses: kill -9 a replica, start it again on its port; the
    sentinels see it in sync again, and the master has not changed."""
    master = group.master()
    replica = group.replicas()[0]
    group.kill(replica)
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host=replica.host, port=replica.port).ping()
    group.restart(replica)
    group.wait_until_ready()
    assert group.master() == master
    assert replica in group.replicas()
    role = redis.Redis(host=replica.host, port=replica.port).execute_command("ROLE")
    assert (role[0], role[2]) == (b"slave", master.port)
