"""Tests of ``wss://``: TLS on the server, certificate verification on the client.

The certificate is made by the test (``wshub.testing.self_signed_certificate``), so
nothing is trusted but what the test says, and no trust store is touched.
"""

from __future__ import annotations

import asyncio
import ssl

import pytest

from wshub import ServerConnection, broadcast, connect
from wshub.protocol import Opcode
from wshub.testing import (
    RawClient,
    TLSCertificate,
    echo,
    loopback_server,
    self_signed_certificate,
    server_url,
)

from . import wait_for


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
