"""Tests of ``wss://``: TLS on the server, certificate verification on the client.

The certificate is made by the test (``wshub.testing.self_signed_certificate``), so
nothing is trusted but what the test says, and no trust store is touched.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

import pytest

from wshub import InvalidHandshake, InvalidResponse, ServerConnection, broadcast, connect
from wshub.protocol import Opcode
from wshub.testing import (
    RawClient,
    TLSCertificate,
    echo,
    loopback_server,
    raw_server,
    self_signed_certificate,
    server_url,
)

from . import UNIT, wait_for


async def test_self_signed_certificate_is_rejected_by_default(
    tls_certificate: TLSCertificate,
) -> None:
    """Without an ``ssl`` argument the client verifies, so a self-signed server fails."""
    async with loopback_server(echo, ssl=tls_certificate.server_context()) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            await wait_for(connect(server_url(server, secure=True)))
        assert server.connections == set()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_trusted_certificate_is_accepted(tls_certificate: TLSCertificate, host: str) -> None:
    """A context that trusts the certificate connects, by IP address or host name."""
    async with loopback_server(echo, ssl=tls_certificate.server_context()) as server:
        url = f"wss://{host}:{server.port}/secure"
        async with connect(url, ssl=tls_certificate.client_context()) as ws:
            assert ws.transport is not None
            assert ws.transport.get_extra_info("ssl_object") is not None
            for message in ["over tls", b"\x00" * 100_000, "x" * 2**20]:
                await ws.send(message)
                assert await wait_for(ws.recv()) == message
            assert await wait_for(ws.ping()) > 0.0
            (server_ws,) = server.connections
            assert server_ws.request is not None and server_ws.request.path == "/secure"
        assert ws.close_code == 1000


async def test_broadcast_and_cork_over_tls(tls_certificate: TLSCertificate) -> None:
    """Corked fan-out goes through the TLS transport too, in order, small and large frames."""
    async with loopback_server(echo, ssl=tls_certificate.server_context()) as server:
        url = server_url(server, secure=True)
        clients = [await connect(url, ssl=tls_certificate.client_context()) for _ in range(3)]
        try:
            for ws in clients:  # registered once it echoes
                await ws.send("ready")
                assert await wait_for(ws.recv()) == "ready"
            messages: list[str | bytes] = ["one", b"\x01" * 10_000, "three"]
            for message in messages:
                assert broadcast(server.connections, message) == 3
            for conn in server.connections:
                conn.cork()
                conn.send_nowait("after")
            for ws in clients:
                assert [await wait_for(ws.recv()) for _ in range(4)] == [*messages, "after"]
        finally:
            for ws in clients:
                await ws.close()


async def test_hostname_is_checked() -> None:
    """A trusted certificate for another name is still refused (hostname verification)."""
    other = self_signed_certificate(hostnames=["other.example"], ip_addresses=[])
    async with loopback_server(echo, ssl=other.server_context()) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            await wait_for(connect(server_url(server, secure=True), ssl=other.client_context()))


async def test_close_codes_over_tls(tls_certificate: TLSCertificate) -> None:
    """The closing handshake works through TLS in both directions."""
    closed: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        message = await ws.recv()
        await ws.close(4005, f"closing after {message}")
        closed.set_result((ws.close_code or 0, ws.close_reason or ""))

    async with loopback_server(handler, ssl=tls_certificate.server_context()) as server:
        async with connect(
            server_url(server, secure=True), ssl=tls_certificate.client_context()
        ) as ws:
            await ws.send("one")
            await wait_for(ws.wait_closed())
            assert (ws.close_code, ws.close_reason) == (4005, "closing after one")
        assert await wait_for(closed) == (4005, "")


async def test_raw_tls_client_gets_frames(tls_certificate: TLSCertificate) -> None:
    """A raw client over TLS sees the same frames as over TCP (the helper speaks TLS)."""
    async with (
        loopback_server(echo, ssl=tls_certificate.server_context()) as server,
        await RawClient.connect(
            "127.0.0.1", server.port, ssl=tls_certificate.client_context()
        ) as raw,
    ):
        await wait_for(raw.handshake())
        raw.send_frame(Opcode.BINARY, b"\x01\x02")
        frame = await wait_for(raw.recv_frame())
        assert (frame.opcode, frame.payload) == (Opcode.BINARY, b"\x01\x02")
        raw.send_close(1000)
        assert await wait_for(raw.recv_close()) == (1000, "")


# -- the wrong scheme for the port ---------------------------------------------------------------


async def test_wss_to_a_plain_port_says_the_server_did_not_answer_tls(
    tls_certificate: TLSCertificate,
) -> None:
    """``wss://`` to a plain wshub port fails at once, saying TLS was not answered.

    The server answers the TLS ClientHello with a plain-HTTP 400, so neither side waits
    for ``open_timeout``.
    """
    async with loopback_server(echo) as server:
        with pytest.raises(InvalidHandshake) as exc_info:
            await wait_for(
                connect(server_url(server, secure=True), ssl=tls_certificate.client_context())
            )
        assert str(exc_info.value).startswith("TLS handshake failed: the server did not answer TLS")
        assert isinstance(exc_info.value.__cause__, ssl.SSLError)
        assert server.stats.http_responses == {400: 1}


async def test_wss_to_a_silent_plain_port_times_out_saying_tls(
    tls_certificate: TLSCertificate,
) -> None:
    """A plain server that waits for a request line it never gets: the timeout says TLS."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    plain = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with plain:
        port = plain.sockets[0].getsockname()[1]
        with pytest.raises(TimeoutError) as exc_info:
            await wait_for(
                connect(
                    f"wss://127.0.0.1:{port}/",
                    ssl=tls_certificate.client_context(),
                    open_timeout=4 * UNIT,
                )
            )
        message = str(exc_info.value)
        assert message.startswith("TLS handshake failed: the server did not answer TLS")
        assert f"wss://127.0.0.1:{port}/" in message


async def test_wss_to_a_closed_port_is_refused(tls_certificate: TLSCertificate) -> None:
    """No listener: the TCP error comes through as before, not as a TLS failure."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        await wait_for(connect(f"wss://127.0.0.1:{port}/", ssl=tls_certificate.client_context()))


async def test_ws_to_a_tls_port_suggests_wss(tls_certificate: TLSCertificate) -> None:
    """``ws://`` to a TLS port: the server hangs up unanswered, and the error says why."""
    async with loopback_server(echo, ssl=tls_certificate.server_context()) as server:
        with pytest.raises(InvalidResponse) as exc_info:
            await wait_for(connect(server_url(server)))
        assert "if this port speaks TLS, use a wss:// URL" in str(exc_info.value)


async def test_ws_to_a_server_that_answers_with_a_tls_alert() -> None:
    """A server that answers the plain request with a TLS record: the client says so."""
    async with raw_server() as server:
        opening = asyncio.ensure_future(connect(server.url()))
        peer = await wait_for(server.accept())
        await wait_for(peer.read_request())
        peer.write(bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]))  # alert: fatal, 70
        with pytest.raises(InvalidHandshake, match="the server answered with TLS: use a wss://"):
            await wait_for(opening)
