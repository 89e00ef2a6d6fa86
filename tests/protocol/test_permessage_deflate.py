"""Tests for wshub.protocol.extensions.permessage_deflate (RFC 7692)."""

from __future__ import annotations

import itertools
import random
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wshub.exceptions import NegotiationError, PayloadTooBig, ProtocolError
from wshub.protocol.client import ClientHandshake
from wshub.protocol.extensions import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
    client_deflate,
    server_deflate,
)
from wshub.protocol.extensions.permessage_deflate import SharedDeflate
from wshub.protocol.http11 import Request
from wshub.protocol.server import accept_request
from wshub.protocol.uri import parse_uri

Params = list[tuple[str, str | None]]


def pair(
    *,
    server_nct: bool = False,
    client_nct: bool = False,
    server_bits: int = 15,
    client_bits: int = 15,
) -> tuple[PerMessageDeflate, PerMessageDeflate]:
    """A server and a client extension that agree on the parameters."""
    server = PerMessageDeflate(
        remote_no_context_takeover=client_nct,
        local_no_context_takeover=server_nct,
        remote_max_window_bits=client_bits,
        local_max_window_bits=server_bits,
    )
    client = PerMessageDeflate(
        remote_no_context_takeover=server_nct,
        local_no_context_takeover=client_nct,
        remote_max_window_bits=server_bits,
        local_max_window_bits=client_bits,
    )
    return server, client


def roundtrip(sender: PerMessageDeflate, receiver: PerMessageDeflate, message: bytes) -> bytes:
    return receiver.decompress(sender.compress(message), fin=True, max_size=None)


# Data: RFC 7692 §7.2.


def test_rfc_example_hello() -> None:
    """§7.2.3.1: "Hello" compresses to the bytes of the RFC's example and back."""
    server, client = pair()
    compressed = server.compress(b"Hello")
    assert compressed == bytes.fromhex("f248cdc9c90700")
    assert client.decompress(compressed, fin=True, max_size=None) == b"Hello"


def test_rfc_example_fragments() -> None:
    """§7.2.3.1: a message split into two frames decompresses frame by frame."""
    _, client = pair()
    assert client.decompress(bytes.fromhex("f248cd"), fin=False, max_size=None) == b"He"
    assert client.decompress(bytes.fromhex("c9c90700"), fin=True, max_size=None) == b"llo"


def test_rfc_example_context_takeover() -> None:
    """§7.2.3.2: the second "Hello" refers to the first through the shared window."""
    server, client = pair()
    assert client.decompress(server.compress(b"Hello"), fin=True, max_size=None) == b"Hello"
    second = server.compress(b"Hello")
    assert second == bytes.fromhex("f200110000")
    assert client.decompress(second, fin=True, max_size=None) == b"Hello"


def test_rfc_example_no_compression_block() -> None:
    """§7.2.3.3: a stored (BTYPE=00) block decompresses too."""
    _, client = pair()
    stored = bytes.fromhex("0005 00fa ff48 656c 6c6f 00".replace(" ", ""))
    assert client.decompress(stored, fin=True, max_size=None) == b"Hello"


def test_bfinal_block_starts_a_new_stream() -> None:
    """§7.2.3.4: after a BFINAL block the next message starts a new deflate stream."""
    _, client = pair()
    for _ in range(2):
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = compressor.compress(b"Hello") + compressor.flush(zlib.Z_FINISH)
        assert client.decompress(data, fin=True, max_size=None) == b"Hello"


def test_empty_message() -> None:
    """§7.2.3.6: an empty message compresses to a single 0x00 byte."""
    server, client = pair()
    assert server.compress(b"") == b"\x00"
    assert client.decompress(b"\x00", fin=True, max_size=None) == b""
    assert roundtrip(server, client, b"") == b""


def test_corrupt_data_is_1007() -> None:
    """Invalid deflate data fails with close code 1007."""
    _, client = pair()
    with pytest.raises(ProtocolError) as exc_info:
        client.decompress(b"\xff\xff\xff\xff", fin=True, max_size=None)
    assert exc_info.value.code == 1007


def test_no_context_takeover_resets_between_messages() -> None:
    """Without context takeover, each message decompresses on its own (§7.1.1)."""
    server, client = pair(server_nct=True)
    first = server.compress(b"Hello")
    second = server.compress(b"Hello")
    assert first == second  # the compressor started afresh
    fresh = PerMessageDeflate(
        remote_no_context_takeover=True,
        local_no_context_takeover=False,
        remote_max_window_bits=15,
        local_max_window_bits=15,
    )
    assert fresh.decompress(second, fin=True, max_size=None) == b"Hello"
    assert client.decompress(first, fin=True, max_size=None) == b"Hello"
    assert client.decompress(second, fin=True, max_size=None) == b"Hello"


def test_zlib_objects_are_created_lazily_and_dropped() -> None:
    """An idle extension holds no zlib state; no_context_takeover frees it after each message."""
    server, client = pair(server_nct=True)
    assert server._compressor is None and client._decompressor is None
    data = server.compress(b"x" * 100)
    assert server._compressor is None
    client.decompress(data, fin=False, max_size=None)
    assert client._decompressor is not None  # mid-message: the window is needed
    client.decompress(b"", fin=True, max_size=None)
    assert client._decompressor is None
    keep, _ = pair()
    keep.compress(b"x")
    assert keep._compressor is not None


def test_release_idle_drops_only_a_compressor_unused_since_the_last_call() -> None:
    """release_idle frees the compressor of a quiet connection, never of a busy one."""
    server, _ = pair(server_bits=12, client_bits=12)
    assert server.release_idle() is False  # nothing to free yet
    server.compress(b"hello")
    assert server.release_idle() is False  # used since the last call
    assert server._compressor is not None
    assert server.release_idle() is True  # quiet for a whole period
    assert server._compressor is None
    assert server.release_idle() is False
    server._decompressor = zlib.decompressobj(-12)
    server.release_idle()
    assert server._decompressor is not None  # the peer may refer back: kept


@pytest.mark.parametrize("server_bits", [9, 12, 15])
def test_a_released_compressor_continues_the_peers_stream(server_bits: int) -> None:
    """After release_idle the next messages still decode with context takeover, by our
    decompressor and by zlib reading the whole stream, and the new compressor starts
    empty (the repeated message costs what it cost the first time)."""
    server, client = pair(server_bits=server_bits)
    message = b"a message that repeats itself, " * 20
    payloads = [server.compress(message), server.compress(message)]
    assert len(payloads[1]) < len(payloads[0])  # context takeover: a back-reference
    server.release_idle()
    assert server.release_idle() is True
    payloads += [server.compress(message), server.compress(message + b"!")]
    assert len(payloads[2]) == len(payloads[0])  # a new compressor: no history
    expected = [message, message, message, message + b"!"]
    assert [client.decompress(p, fin=True, max_size=None) for p in payloads] == expected
    inflate = zlib.decompressobj(-server_bits)
    whole = b"".join(inflate.decompress(p + b"\x00\x00\xff\xff") for p in payloads)
    assert whole == b"".join(expected)


# Decompression limits.


def test_bomb_is_stopped_without_inflating() -> None:
    """10 MB of zeros under max_size=1 MiB raises PayloadTooBig and frees the window."""
    server, client = pair()
    bomb = server.compress(bytes(10 * 2**20))
    assert len(bomb) < 20_000
    with pytest.raises(PayloadTooBig) as exc_info:
        client.decompress(bomb, fin=True, max_size=2**20)
    assert exc_info.value.code == 1009
    assert client._decompressor is None


def test_bomb_fed_in_frames_never_exceeds_the_budget() -> None:
    """Frame by frame, output never exceeds the remaining budget before the error."""
    server, client = pair()
    bomb = server.compress(bytes(10 * 2**20))
    budget = 2**20
    produced = 0
    with pytest.raises(PayloadTooBig):
        for i in range(0, len(bomb), 100):
            chunk = bomb[i : i + 100]
            produced += len(
                client.decompress(chunk, fin=i + 100 >= len(bomb), max_size=budget - produced)
            )
            assert produced <= budget
    assert produced <= budget


@pytest.mark.parametrize("size", [0, 1, 1000, 65536])
def test_max_size_boundary(size: int) -> None:
    """A message of exactly max_size passes; one more byte is too big."""
    server, client = pair(server_nct=True, client_nct=True)
    message = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert client.decompress(server.compress(message), fin=True, max_size=size) == message
    with pytest.raises(PayloadTooBig):
        client.decompress(server.compress(message + b"!"), fin=True, max_size=size)


# Window bits.


def test_window_bits_8_is_served_with_9_and_stays_within_256_bytes() -> None:
    """8-bit windows: our 9-bit compressor never reaches past 256 bytes (zlib MAX_DIST 250).

    The peer decompresses with a true 8-bit window, across messages with context
    takeover, which fails if any match distance exceeds 256.
    """
    server, client = pair(server_bits=8, client_bits=8)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"epsilon", b"zeta", b"eta", b"theta"]
    for n in range(40):
        message = b" ".join(words[(n * i + i // 3) % len(words)] for i in range(700))
        assert roundtrip(server, client, message) == message
        assert roundtrip(client, server, message) == message


def test_decompressor_uses_the_remote_window() -> None:
    """The decompressor keeps the peer's window: a reference 4 KiB back needs 15 bits."""
    sender = zlib.compressobj(6, zlib.DEFLATED, -15)
    block = random.Random(7).randbytes(4096)  # incompressible: only the window helps
    first = sender.compress(block) + sender.flush(zlib.Z_SYNC_FLUSH)
    second = sender.compress(block) + sender.flush(zlib.Z_SYNC_FLUSH)
    for bits, works in ((15, True), (9, False)):
        receiver = PerMessageDeflate(
            remote_no_context_takeover=False,
            local_no_context_takeover=False,
            remote_max_window_bits=bits,
            local_max_window_bits=15,
        )
        assert receiver.decompress(first[:-4], fin=True, max_size=None) == block
        if works:
            assert receiver.decompress(second[:-4], fin=True, max_size=None) == block
        else:
            with pytest.raises(ProtocolError):
                receiver.decompress(second[:-4], fin=True, max_size=None)


messages = st.lists(st.binary(max_size=2000) | st.text(max_size=500).map(str.encode), max_size=6)


@settings(max_examples=25, deadline=None)
@given(msgs=messages, frame=st.integers(min_value=1, max_value=300))
def test_compress_decompress_identity_every_combination(msgs: list[bytes], frame: int) -> None:
    """compress -> decompress is the identity in both directions, for every parameter
    combination, over several messages split into frames."""
    for server_nct, client_nct, server_bits, client_bits in itertools.product(
        (False, True), (False, True), (8, 9, 12, 15), (8, 11, 15)
    ):
        server, client = pair(
            server_nct=server_nct,
            client_nct=client_nct,
            server_bits=server_bits,
            client_bits=client_bits,
        )
        for message in msgs:
            for sender, receiver in ((server, client), (client, server)):
                data = sender.compress(message)
                chunks = [data[i : i + frame] for i in range(0, len(data), frame)]
                output = b"".join(
                    receiver.decompress(chunk, fin=i == len(chunks) - 1, max_size=None)
                    for i, chunk in enumerate(chunks)
                )
                assert output == message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"remote_max_window_bits": 7},
        {"local_max_window_bits": 16},
        {"compress_level": 10},
        {"mem_level": 0},
    ],
)
def test_invalid_extension_settings(kwargs: dict[str, int]) -> None:
    """Out-of-range settings are refused."""
    settings_ = {
        "remote_no_context_takeover": False,
        "local_no_context_takeover": False,
        "remote_max_window_bits": 15,
        "local_max_window_bits": 15,
        **kwargs,
    }
    with pytest.raises(ValueError):
        PerMessageDeflate(**settings_)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"server_max_window_bits": 16}, {"client_max_window_bits": 7}, {"compress_level": -2}],
)
def test_invalid_factory_settings(kwargs: dict[str, int]) -> None:
    """Factories refuse out-of-range settings."""
    with pytest.raises(ValueError):
        ServerPerMessageDeflateFactory(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ClientPerMessageDeflateFactory(**kwargs)  # type: ignore[arg-type]


def test_reprs() -> None:
    """Reprs name the negotiated parameters."""
    assert "local_max_window_bits=12" in repr(pair(server_bits=12)[0])
    assert repr(server_deflate()).startswith("ServerPerMessageDeflateFactory(")
    assert "client_max_window_bits=None" in repr(client_deflate())


# Server negotiation: RFC 7692 §7.1.


def accept(
    factory: ServerPerMessageDeflateFactory, params: Params
) -> tuple[Params, PerMessageDeflate]:
    result = factory.accept(params)
    assert result is not None
    return result


@pytest.mark.parametrize(
    "params",
    [
        [("unknown", None)],
        [("server_no_context_takeover", None), ("server_no_context_takeover", None)],
        [("client_max_window_bits", None), ("client_max_window_bits", "10")],
        [("server_no_context_takeover", "1")],
        [("client_no_context_takeover", "")],
        [("server_max_window_bits", None)],
        [("server_max_window_bits", "7")],
        [("server_max_window_bits", "16")],
        [("server_max_window_bits", "09")],
        [("server_max_window_bits", "+9")],
        [("server_max_window_bits", "ten")],
        [("client_max_window_bits", "7")],
        [("client_max_window_bits", "010")],
    ],
)
def test_server_declines_invalid_offers(params: Params) -> None:
    """§7.1: unknown or repeated parameters and invalid values make the offer declined."""
    assert ServerPerMessageDeflateFactory().accept(params) is None


@pytest.mark.parametrize(
    ("config", "offer", "response", "expected"),
    [
        ({}, [], [], (False, False, 15, 15)),
        (
            {},
            [("client_max_window_bits", None)],
            [],
            (False, False, 15, 15),
        ),
        (
            {},
            [("server_no_context_takeover", None)],
            [("server_no_context_takeover", None)],
            (True, False, 15, 15),
        ),
        (
            {},
            [("client_no_context_takeover", None)],
            [("client_no_context_takeover", None)],
            (False, True, 15, 15),
        ),
        (
            {"server_no_context_takeover": True, "client_no_context_takeover": True},
            [],
            [("server_no_context_takeover", None), ("client_no_context_takeover", None)],
            (True, True, 15, 15),
        ),
        (
            {},
            [("server_max_window_bits", "10")],
            [("server_max_window_bits", "10")],
            (False, False, 10, 15),
        ),
        (
            {"server_max_window_bits": 12},
            [("server_max_window_bits", "10")],
            [("server_max_window_bits", "10")],
            (False, False, 10, 15),
        ),
        (
            {"server_max_window_bits": 9},
            [("server_max_window_bits", "10")],
            [("server_max_window_bits", "9")],
            (False, False, 9, 15),
        ),
        (
            {"server_max_window_bits": 12},
            [],
            [("server_max_window_bits", "12")],
            (False, False, 12, 15),
        ),
        (
            {"client_max_window_bits": 12},
            [],
            [],
            (False, False, 15, 15),
        ),
        (
            {"client_max_window_bits": 12},
            [("client_max_window_bits", None)],
            [("client_max_window_bits", "12")],
            (False, False, 15, 12),
        ),
        (
            {"client_max_window_bits": 12},
            [("client_max_window_bits", "10")],
            [("client_max_window_bits", "10")],
            (False, False, 15, 10),
        ),
        (
            {},
            [("client_max_window_bits", "10")],
            [],
            (False, False, 15, 10),
        ),
        (
            {},
            [("server_max_window_bits", "8"), ("client_max_window_bits", "8")],
            [("server_max_window_bits", "8")],
            (False, False, 8, 8),
        ),
    ],
)
def test_server_response_rules(
    config: dict[str, int | bool],
    offer: Params,
    response: Params,
    expected: tuple[bool, bool, int, int],
) -> None:
    """The response follows §7.1.1-§7.1.2 and the extension uses what was agreed."""
    params, extension = accept(ServerPerMessageDeflateFactory(**config), offer)  # type: ignore[arg-type]
    assert params == response
    assert (
        extension.local_no_context_takeover,
        extension.remote_no_context_takeover,
        extension.local_max_window_bits,
        extension.remote_max_window_bits,
    ) == expected


def test_server_passes_zlib_settings() -> None:
    """compress_level and mem_level reach the extension."""
    _, extension = accept(ServerPerMessageDeflateFactory(compress_level=1, mem_level=4), [])
    assert (extension.compress_level, extension.mem_level) == (1, 4)


# Client negotiation.


def test_client_offers() -> None:
    """The offer states every configured parameter and always client_max_window_bits."""
    assert client_deflate().offer() == [("client_max_window_bits", None)]
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        server_max_window_bits=10,
        client_max_window_bits=11,
    )
    assert factory.offer() == [
        ("server_no_context_takeover", None),
        ("client_no_context_takeover", None),
        ("server_max_window_bits", "10"),
        ("client_max_window_bits", "11"),
    ]


@pytest.mark.parametrize(
    ("config", "response"),
    [
        ({}, [("unknown", None)]),
        ({}, [("client_max_window_bits", None)]),
        ({}, [("server_max_window_bits", "16")]),
        ({}, [("server_no_context_takeover", None), ("server_no_context_takeover", None)]),
        ({"server_no_context_takeover": True}, []),
        ({"server_max_window_bits": 10}, []),
        ({"server_max_window_bits": 10}, [("server_max_window_bits", "11")]),
    ],
)
def test_client_refuses_bad_responses(config: dict[str, int | bool], response: Params) -> None:
    """Invalid responses, or ones that ignore what we required, fail negotiation."""
    with pytest.raises(NegotiationError):
        ClientPerMessageDeflateFactory(**config).accept(response)  # type: ignore[arg-type]


def test_client_applies_the_response() -> None:
    """The client compresses and decompresses with what the server answered."""
    extension = ClientPerMessageDeflateFactory(client_max_window_bits=12).accept(
        [
            ("server_no_context_takeover", None),
            ("client_no_context_takeover", None),
            ("server_max_window_bits", "9"),
            ("client_max_window_bits", "10"),
        ]
    )
    assert extension.remote_no_context_takeover
    assert extension.local_no_context_takeover
    assert extension.remote_max_window_bits == 9
    assert extension.local_max_window_bits == 10
    hint = ClientPerMessageDeflateFactory(client_max_window_bits=11).accept([])
    assert hint.local_max_window_bits == 11  # our own hint binds us


bits_options = (None, 8, 9, 12, 15)


@pytest.mark.parametrize(
    ("server_nct", "client_nct", "server_bits", "client_bits"),
    list(itertools.product((False, True), (False, True), bits_options, bits_options)),
)
def test_negotiation_matrix(
    server_nct: bool, client_nct: bool, server_bits: int | None, client_bits: int | None
) -> None:
    """Every client configuration against every server configuration agrees and works.

    The server's idea of each direction must equal the client's, and messages flow both
    ways, including across several messages.
    """
    for client_config, server_config in (
        (
            {
                "server_no_context_takeover": server_nct,
                "client_no_context_takeover": client_nct,
                "server_max_window_bits": server_bits,
                "client_max_window_bits": client_bits,
            },
            {},
        ),
        (
            {},
            {
                "server_no_context_takeover": server_nct,
                "client_no_context_takeover": client_nct,
                "server_max_window_bits": server_bits,
                "client_max_window_bits": client_bits,
            },
        ),
    ):
        client_factory = ClientPerMessageDeflateFactory(**client_config)  # type: ignore[arg-type]
        server_factory = ServerPerMessageDeflateFactory(**server_config)  # type: ignore[arg-type]
        params, server = accept(server_factory, client_factory.offer())
        client = client_factory.accept(params)
        assert server.local_no_context_takeover == client.remote_no_context_takeover
        assert server.remote_no_context_takeover == client.local_no_context_takeover
        assert server.local_max_window_bits == client.remote_max_window_bits
        assert server.remote_max_window_bits >= client.local_max_window_bits
        for n in range(3):
            message = b"message %d " % n * 200
            assert roundtrip(server, client, message) == message
            assert roundtrip(client, server, message) == message


# Through the handshake, as Autobahn's 12.* and 13.* cases do.


@pytest.mark.parametrize(
    "offers",
    [
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; client_no_context_takeover",
        "permessage-deflate; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=9",
        "permessage-deflate; server_max_window_bits=15",
        "permessage-deflate; client_max_window_bits=9",
        "permessage-deflate; client_max_window_bits=15",
        "permessage-deflate; server_max_window_bits=8; client_max_window_bits=8",
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=9, "
        "permessage-deflate; server_no_context_takeover, permessage-deflate",
        'permessage-deflate; client_max_window_bits="10"',
    ],
)
@pytest.mark.parametrize("factory", [server_deflate(), ServerPerMessageDeflateFactory()])
def test_autobahn_style_offers_are_accepted(
    offers: str, factory: ServerPerMessageDeflateFactory
) -> None:
    """Offers like Autobahn's are accepted and the response is valid for the offer."""
    client = ClientHandshake(parse_uri("ws://h/"))
    request = client.request
    headers = request.headers.copy()
    headers.add("Sec-WebSocket-Extensions", offers)
    accepted = accept_request(Request("GET", "/", headers), extensions=[factory])
    (extension,) = accepted.extensions
    assert isinstance(extension, PerMessageDeflate)
    answer = accepted.response.headers["Sec-WebSocket-Extensions"]
    assert answer.startswith("permessage-deflate")
    if "client_max_window_bits" not in offers.split(",")[0]:
        assert "client_max_window_bits" not in answer


def test_default_factories_work_together() -> None:
    """server_deflate() and client_deflate() negotiate 12-bit windows both ways."""
    client = ClientHandshake(parse_uri("ws://h/"), extensions=[client_deflate()])
    accepted = accept_request(client.request, extensions=[server_deflate()])
    (client_ext,) = client.validate(accepted.response).extensions
    (server_ext,) = accepted.extensions
    assert isinstance(client_ext, PerMessageDeflate)
    assert isinstance(server_ext, PerMessageDeflate)
    assert (client_ext.local_max_window_bits, client_ext.remote_max_window_bits) == (12, 12)
    assert server_ext.mem_level == 5
    assert roundtrip(server_ext, client_ext, b"x" * 10000) == b"x" * 10000


# Interoperability with an independent implementation (the websockets library).

ws_deflate = pytest.importorskip("websockets.extensions.permessage_deflate")
ws_frames = pytest.importorskip("websockets.frames")


def ws_roundtrips(ours: PerMessageDeflate, theirs: object) -> None:
    """Messages flow both ways between our extension and websockets' one."""
    for n in range(4):
        message = b"interop %d " % n * 300
        frame = theirs.encode(ws_frames.Frame(ws_frames.Opcode.BINARY, message))  # type: ignore[attr-defined]
        assert frame.rsv1
        assert ours.decompress(frame.data, fin=True, max_size=None) == message
        ours_frame = ws_frames.Frame(ws_frames.Opcode.BINARY, ours.compress(message), rsv1=True)
        assert theirs.decode(ours_frame).data == message  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"server_no_context_takeover": True},
        {"client_no_context_takeover": True},
        {"server_max_window_bits": 10},
        {"client_max_window_bits": 9},
        {
            "server_max_window_bits": 9,
            "client_max_window_bits": 12,
            "client_no_context_takeover": True,
        },
    ],
)
def test_interop_websockets_client_with_our_server(config: dict[str, int | bool]) -> None:
    """websockets' client factory negotiates with ours and exchanges compressed data."""
    theirs = ws_deflate.ClientPerMessageDeflateFactory(**config)
    params, ours = accept(ServerPerMessageDeflateFactory(), list(theirs.get_request_params()))
    ws_roundtrips(ours, theirs.process_response_params(params, []))
    params, ours = accept(server_deflate(), list(theirs.get_request_params()))
    ws_roundtrips(ours, theirs.process_response_params(params, []))


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"server_no_context_takeover": True},
        {"client_no_context_takeover": True},
        {"server_max_window_bits": 10},
        {"client_max_window_bits": 8},
        {"server_max_window_bits": 9, "client_max_window_bits": 12},
    ],
)
def test_interop_our_client_with_websockets_server(config: dict[str, int | bool]) -> None:
    """Our client factory negotiates with websockets' server factory."""
    for theirs_config in ({}, {"server_max_window_bits": 11, "client_max_window_bits": 10}):
        theirs = ws_deflate.ServerPerMessageDeflateFactory(**theirs_config)
        factory = ClientPerMessageDeflateFactory(**config)  # type: ignore[arg-type]
        params, their_ext = theirs.process_request_params(factory.offer(), [])
        ws_roundtrips(factory.accept(params), their_ext)


param_names = st.sampled_from(
    [
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
        "x",
    ]
)
param_values = st.none() | st.sampled_from(["8", "9", "12", "15", "16", "0", "08", ""])
param_lists = st.lists(st.tuples(param_names, param_values), max_size=5)


@given(param_lists)
def test_any_offer_is_accepted_or_declined(params: Params) -> None:
    """The server never raises on an offer; an accepted one gets a valid response."""
    for factory in (ServerPerMessageDeflateFactory(), server_deflate()):
        result = factory.accept(params)
        if result is None:
            continue
        response, server = result
        client = ClientPerMessageDeflateFactory().accept(response)
        assert server.local_max_window_bits == client.remote_max_window_bits
        offered = dict(params)
        if "client_max_window_bits" not in offered:
            assert "client_max_window_bits" not in dict(response)


@given(param_lists)
def test_any_response_is_accepted_or_refused(params: Params) -> None:
    """The client either accepts a response or raises NegotiationError."""
    try:
        ClientPerMessageDeflateFactory(server_max_window_bits=12).accept(params)
    except NegotiationError:
        pass


@given(st.lists(st.binary(max_size=64), max_size=5))
def test_garbage_data_raises_protocol_error_only(frames: list[bytes]) -> None:
    """Random compressed payloads decompress or fail with a ProtocolError."""
    _, client = pair()
    try:
        for i, frame in enumerate(frames):
            client.decompress(frame, fin=i == len(frames) - 1, max_size=1000)
    except ProtocolError:
        pass


# Shared compression: server_no_context_takeover granted unasked (§7.1.1.1).


def test_shared_server_grants_server_no_context_takeover_unasked() -> None:
    """server_deflate(shared=True) answers a browser's offer with server_no_context_takeover,
    and the extension compresses through the one SharedDeflate of its parameters."""
    params, extension = accept(server_deflate(shared=True), [("client_max_window_bits", None)])
    assert params == [
        ("server_no_context_takeover", None),
        ("server_max_window_bits", "12"),
        ("client_max_window_bits", "12"),
    ]
    assert extension.local_no_context_takeover
    assert extension.shared is SharedDeflate.of(12, 6, 5)
    assert "window_bits=12" in repr(extension.shared)
    _, plain = accept(server_deflate(), [("client_max_window_bits", None)])
    assert plain.shared is None


def test_shared_compression_is_what_the_connection_would_send() -> None:
    """SharedDeflate compresses like the connection's own compressor without context
    takeover: the peer inflates either the same way."""
    server, client = pair(server_nct=True, server_bits=10)
    message = b"a message, a message, a message"
    assert server.shared is not None
    shared = server.shared.compress(message)
    assert shared == server.compress(message)
    assert client.decompress(shared, fin=True, max_size=None) == message
    assert client.decompress(shared, fin=True, max_size=None) == message


def test_shared_client_asks_for_server_no_context_takeover() -> None:
    """client_deflate(shared=True) offers server_no_context_takeover and refuses a server
    that does not grant it (§7.1.1.1)."""
    factory = client_deflate(shared=True)
    assert factory.offer() == [
        ("server_no_context_takeover", None),
        ("client_max_window_bits", None),
    ]
    assert factory.accept([("server_no_context_takeover", None)]).remote_no_context_takeover
    with pytest.raises(NegotiationError):
        factory.accept([])
