"""Tests for wshub.hub.config: one HubConfig, checked in one place, read from TOML."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from wshub import ConfigError, TransportOptions
from wshub.cli import ServeConfig
from wshub.exceptions import AuthError, HubError
from wshub.hub import Hub, HubLimits, make_token
from wshub.hub.channels import NamespaceOptions, SlowConsumerPolicy
from wshub.hub.client import HubClient
from wshub.hub.config import (
    REDACTED,
    ApiConfig,
    AuthConfig,
    HubConfig,
    ListenConfig,
    MemoryStorage,
    MetricsConfig,
    Namespace,
    RedisStorage,
    SQLiteStorage,
    TLSConfig,
)
from wshub.hub.config_file import SECTIONS, dump_toml, field_docs, read_file
from wshub.hub.server import start_hub

from .conftest import SECRET

NEWS = Namespace(name="news", options=NamespaceOptions(history_size=2, publish="any"))


def errors_of(data: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        HubConfig.parse(data)
    return info.value.errors


# --- checked in one place, errors that name the field ------------------------------------


def test_errors_name_the_field_by_its_path() -> None:
    """Each problem of a file is one line that starts with the field's path."""
    errors = errors_of(
        {
            "namespaces": [{"name": "ok"}, {"name": "bad", "history_size": -1}],
            "listen": {"port": 99999},
            "limits": {"max_channels": "many"},
            "transport": {"max_size": 0},
            "storage": {"kind": "disk"},
            "dedupe_window": "soon",
            "colour": "blue",
        }
    )
    assert set(errors) == {
        "namespaces[1].history_size: must be >= 0, got -1",
        "listen.port: must be 0-65535, got 99999",
        "limits.max_channels: must be an integer, got 'many'",
        "transport.max_size: must be >= 1 or none, got 0",
        "storage.kind: must be one of memory, sqlite, redis, got 'disk'",
        "dedupe_window: must be a number, got 'soon'",
        "colour: unknown field",
    }


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"listen": {"prot": 1}}, "listen.prot: unknown field"),
        ({"listen": 5}, "listen: must be a table"),
        ({"auth": {"secret": "short"}}, "auth.secret: must be at least 32 bytes"),
        ({"auth": {"leeway": -1}}, "auth.leeway: must be >= 0 seconds, got -1.0"),
        (
            {"auth": {"anonymous_permissions": ["chat:*:x"]}},
            "auth.anonymous_permissions[0]: invalid permission entry: 'chat:*:x'",
        ),
        ({"auth": {"allow_anonymous": "yes"}}, "auth.allow_anonymous: must be true or false"),
        ({"tls": {"keyfile": "key.pem"}}, "tls.keyfile: needs certfile"),
        ({"metrics": {"access": "all"}}, "metrics.access: must be one of local, key, open, off"),
        ({"storage": {"kind": "redis", "url": "http://x"}}, "storage.url: must be a redis://"),
        ({"storage": {"kind": "sqlite", "data_dir": ""}}, "storage.data_dir: must not be empty"),
        ({"storage": []}, "storage: must be a table"),
        ({"namespaces": {"name": "x"}}, "namespaces: must be an array of tables"),
        ({"namespaces": [{"history_size": 1}]}, "namespaces[0].name: required, a string"),
        ({"namespaces": [{"name": "Upper"}]}, "namespaces[0].name: must be 1-32 of a-z"),
        (
            {"namespaces": [{"name": "a"}, {"name": "a"}]},
            "namespaces[1].name: 'a' is declared twice",
        ),
        (
            {"namespaces": [{"name": "a", "slow_consumer": "wait"}]},
            "namespaces[0].slow_consumer: must be one of disconnect, drop-oldest, latest",
        ),
        ({"namespaces": [{"name": "a", "publish": "all"}]}, "namespaces[0].publish: must be"),
        ({"limits": {"publish_rate": 0}}, "limits.publish_rate: must be > 0 seconds, got 0"),
        ({"limits": {"max_recovery": -1}}, "limits.max_recovery: must be >= 0, got -1"),
        ({"limits": {"max_channels": "none"}}, "limits.max_channels: must be an integer"),
        ({"transport": {"origins": "none"}}, "transport.origins: unknown field"),
        ({"listen": {"origins": "x"}}, "listen.origins: must be a list of strings or 'none'"),
        ({"dedupe_window": 0}, "dedupe_window: must be > 0 seconds, got 0.0"),
        ({"default_namespace": {"queue_size": 0}}, "default_namespace.queue_size: must be >= 1"),
    ],
)
def test_one_error(data: dict[str, Any], error: str) -> None:
    """Each kind of problem is reported with its field's path."""
    errors = errors_of(data)
    assert len(errors) == 1 and errors[0].startswith(error), errors


def test_python_values_are_checked_like_files() -> None:
    """The parts check themselves when built in Python too, with the same messages."""
    with pytest.raises(ConfigError, match=r"^history_size: must be >= 0, got -1$"):
        NamespaceOptions(history_size=-1)
    with pytest.raises(ConfigError, match=r"^port: must be 0-65535"):
        ListenConfig(port=-1)
    with pytest.raises(ConfigError, match=r"limits\.command_burst: must be >= 0"):
        HubConfig(limits=HubLimits(command_burst=-1))
    with pytest.raises(ValueError):  # a ConfigError is a ValueError for older callers
        AuthConfig(secret="short")


def test_none_means_no_limit_where_allowed() -> None:
    """'none' in a file is None where the field allows it."""
    config = HubConfig.parse(
        {
            "transport": {"max_size": "none", "ping_interval": "none"},
            "limits": {"publish_rate": "none"},
            "listen": {"origins": ["https://a.example"], "max_connections": 10},
        }
    )
    assert config.transport.max_size is None and config.transport.ping_interval is None
    assert config.limits.publish_rate is None
    assert config.listen.origins == ("https://a.example",)
    assert config.listen.max_connections == 10


def test_slow_consumer_policy_is_an_enum() -> None:
    """A string names the policy and becomes the enum member, which equals the string."""
    options = NamespaceOptions(slow_consumer="latest")  # type: ignore[arg-type]
    assert options.slow_consumer is SlowConsumerPolicy.LATEST
    assert options.slow_consumer == "latest"
    config = HubConfig.parse({"namespaces": [{"name": "t", "slow_consumer": "drop-oldest"}]})
    assert config.namespaces[0].options.slow_consumer is SlowConsumerPolicy.DROP_OLDEST


# --- the file form ------------------------------------------------------------------------


def full_config() -> HubConfig:
    return HubConfig(
        listen=ListenConfig(port=0, origins=("https://a.example",), max_connections=5),
        tls=TLSConfig(),
        transport=TransportOptions(max_size=4096, compression=None),
        limits=HubLimits(publish_rate=None, max_channels=3),
        auth=AuthConfig(
            secret=SECRET,
            audience="aud",
            leeway=1.5,
            allow_anonymous=True,
            anonymous_permissions=("news:*:s",),
        ),
        storage=RedisStorage(url="redis://user:hunter2@db:6379/1", prefix="p"),
        namespaces=(NEWS, Namespace(name="t", options=NamespaceOptions(slow_consumer="latest"))),  # type: ignore[arg-type]
        default_namespace=NamespaceOptions(history_size=1),
        api=ApiConfig(api_key="k" * 20, enabled=False),
        metrics=MetricsConfig(access="off"),
        dedupe_window=30.0,
    )


def test_serialize_then_parse_is_the_same_config() -> None:
    """serialize() -> TOML text -> parse() gives back an equal configuration."""
    config = full_config()
    text = dump_toml(config.serialize(redact=False), comments=True)
    assert HubConfig.parse(tomllib.loads(text)) == config
    assert HubConfig.parse(tomllib.loads(dump_toml(HubConfig().serialize()))) == HubConfig()


def test_secrets_are_redacted_when_shown() -> None:
    """The token secret, the API key and a Redis password are never shown by default."""
    config = full_config()
    shown = config.serialize()
    assert shown["auth"]["secret"] == REDACTED and shown["api"]["api_key"] == REDACTED
    assert shown["storage"]["url"] == f"redis://user:{REDACTED}@db:6379/1"
    text = dump_toml(shown)
    assert SECRET not in text and "hunter2" not in text and "k" * 20 not in text
    assert SECRET not in repr(config) and "k" * 20 not in repr(config)
    assert "secret" not in HubConfig().serialize()["auth"]  # unset: left out


def test_secrets_from_files(tmp_path: Path) -> None:
    """secret_file and api_key_file name files holding the secret (newline stripped)."""
    (tmp_path / "secret").write_text(SECRET + "\n")
    (tmp_path / "key").write_text("api-key-0123456789")
    path = tmp_path / "wshub.toml"
    path.write_text(
        f'[auth]\nsecret_file = "{tmp_path / "secret"}"\n'
        f'[api]\napi_key_file = "{tmp_path / "key"}"\n'
    )
    config = HubConfig.parse(read_file(path))
    assert config.auth.secret == SECRET and config.api.api_key == "api-key-0123456789"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[auth]\nsecret = "x"\nsecret_file = "f"\n', "auth.secret_file: give secret or"),
        ('[auth]\nsecret_file = "/nonexistent/secret"\n', "auth.secret_file: cannot read"),
        ("[auth]\nsecret_file = 5\n", "auth.secret_file: must be a string"),
        ("[listen\n", "wshub.toml: not TOML"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, error: str) -> None:
    """An unreadable secret file or a file that is not TOML is one error naming it."""
    path = tmp_path / "wshub.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_file(path)
    assert len(info.value.errors) == 1 and error in info.value.errors[0]
    with pytest.raises(ConfigError, match="cannot read"):
        read_file(tmp_path / "missing.toml")


def test_every_field_is_documented_in_its_docstring() -> None:
    """The comments of a written file come from the docstrings: none may be missing."""
    for cls in {*SECTIONS.values(), HubConfig, MemoryStorage, RedisStorage, Namespace}:
        names = {field.name for field in dataclasses.fields(cls)}
        assert names <= set(field_docs(cls)), cls


# --- start_hub(config) --------------------------------------------------------------------


async def test_start_hub_runs_the_namespaces_and_auth_of_a_config(tmp_path: Path) -> None:
    """The config's namespaces, history size, anonymous permissions and storage apply."""
    config = HubConfig(
        listen=ListenConfig(port=0),
        auth=AuthConfig(secret=SECRET, allow_anonymous=True, anonymous_permissions=("news:*:sr",)),
        storage=SQLiteStorage(data_dir=str(tmp_path / "data")),
        namespaces=(NEWS,),
    )
    async with await start_hub(config) as server:
        writer = make_token(SECRET, "editor", 60, ["news:*:spr"])
        async with HubClient(server.url(), writer) as editor, HubClient(server.url()) as reader:
            for n in range(3):
                await editor.publish("news:today", {"n": n})
            page = await reader.history("news:today")
            assert [p.data for p in page.publications] == [{"n": 1}, {"n": 2}]  # history_size 2
            with pytest.raises(HubError):  # anonymous: subscribe and read, not publish
                await reader.publish("news:today", {"n": 9})
            with pytest.raises(HubError) as unknown:  # not declared: error 108
                await editor.subscribe("chat:lobby")
            assert unknown.value.code == 108
    assert (tmp_path / "data" / "history.db").exists()


async def test_the_library_defaults_are_safe() -> None:
    """A default HubConfig: no anonymous users, no namespace at all."""
    async with await start_hub(HubConfig(listen=ListenConfig(port=0))) as server:
        with pytest.raises(AuthError):
            await HubClient(server.url()).connect()
    assert HubConfig().registry().default is None and list(HubConfig().registry()) == []


async def test_no_silently_ignored_arguments() -> None:
    """hub= with store, auth or namespace settings is refused; so are keywords with a
    config; a bad data directory is an error naming the field."""
    async with Hub() as hub:
        with pytest.raises(ConfigError, match="storage: configures the hub start_hub builds"):
            await start_hub(HubConfig(storage=SQLiteStorage()), hub=hub)
        with pytest.raises(ConfigError, match="storage"):
            await start_hub("127.0.0.1", 0, data_dir="x", hub=hub)
    with pytest.raises(TypeError):
        await start_hub(HubConfig(), ephemeral=True)
    with pytest.raises(TypeError):
        await start_hub("127.0.0.1", 0, ephemeral=True, colour="blue")
    with pytest.raises(ConfigError, match="give exactly one of data_dir, ephemeral and redis"):
        await start_hub("127.0.0.1", 0, ephemeral=True, redis_url="redis://h/0")


async def test_a_caller_hub_with_only_listen_settings() -> None:
    """hub= with a config that only says where to listen serves that hub."""
    config = HubConfig(listen=ListenConfig(port=0, path="/hub"))
    async with Hub() as hub, await start_hub(config, hub=hub) as server:
        assert server.hub is hub and server.url().endswith("/hub")


async def test_tls_and_auth_errors_name_their_section(tmp_path: Path) -> None:
    """A certificate or a public key that cannot be loaded names tls. or auth."""
    missing = HubConfig(listen=ListenConfig(port=0), tls=TLSConfig(certfile=str(tmp_path / "c")))
    with pytest.raises(ConfigError, match=r"^tls\.certfile: cannot load the TLS certificate"):
        await start_hub(missing)
    bad_key = HubConfig(listen=ListenConfig(port=0), auth=AuthConfig(public_key="not a key"))
    with pytest.raises(ConfigError, match=r"^auth\.public_key: "):
        await start_hub(bad_key)


# --- docs/configuration.md documents every field ----------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def documented_fields() -> dict[str, set[str]]:
    """The first column of the table(s) under each ``### `[section]``` heading."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("## The config file")
    text = text[start : text.index("\n## ", start + 1)]
    found: dict[str, set[str]] = {}
    for part in re.split(r"\n### ", text)[1:]:
        heading, _, body = part.partition("\n")
        names = set(re.findall(r"^\| `(\w+)` \|", body, re.M))
        found[heading.strip().strip("`").strip("[]")] = names
    return found


def test_the_docs_document_every_field_of_the_file() -> None:
    """Each section of docs/configuration.md lists exactly the fields of its dataclass."""
    found = documented_fields()

    def names(*classes: type[Any]) -> set[str]:
        return {field.name for cls in classes for field in dataclasses.fields(cls)}

    expected = {key: names(cls) for key, cls in SECTIONS.items()}
    apps = {field.name for field in dataclasses.fields(ServeConfig)} - {"hub"}
    expected["Top level"] = apps | {"dedupe_window"}
    expected["storage"] = names(SQLiteStorage, RedisStorage)
    expected["namespaces"] = {"name"} | names(NamespaceOptions)
    expected.pop("default_namespace")  # documented with [[namespaces]]: the same fields
    assert found == expected
    top = {field.name for field in dataclasses.fields(HubConfig)}
    assert top - set(SECTIONS) - {"namespaces", "storage"} == {"dedupe_window"}


async def test_hub_client_takes_the_same_transport_options() -> None:
    """HubClient(options=TransportOptions(...)) applies them: compression=None offers no
    permessage-deflate in its upgrade request (the default does)."""
    config = HubConfig(listen=ListenConfig(port=0), auth=AuthConfig(allow_anonymous=True))
    async with await start_hub(config) as server:
        assert server.server is not None
        for options, offered in ((TransportOptions(compression=None), False), (None, True)):
            async with HubClient(server.url(), options=options):
                (connection,) = server.server.connections
                header = connection.request.headers.get("Sec-WebSocket-Extensions")
                assert (header is not None) is offered
            while server.server.connections:  # wait for the server to see the close
                await asyncio.sleep(0)
    with pytest.raises(ConfigError, match="max_size: given both"):
        HubClient("ws://127.0.0.1:1/ws", options=TransportOptions(), max_size=10)


async def test_hub_without_configuration_lets_nobody_in(make_client: Any) -> None:
    """Hub(): no anonymous user (and, with a token, no namespace to subscribe to)."""
    async with Hub(expire_interval=None) as hub:
        client = await make_client(hub, connect=False)
        assert (await client.call("connect"))["error"]["code"] == 103
