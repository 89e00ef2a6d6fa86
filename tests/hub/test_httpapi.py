"""Tests for wshub.hub.httpapi, with real HTTP requests to a hub on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from wshub.hub.server import HubServer

from .conftest import http, start_demo_hub


async def test_healthz_needs_no_key(hub_server: HubServer) -> None:
    """GET and HEAD /healthz answer 200 without a key; other methods get 405."""
    status, headers, body = await http(hub_server, "GET", "/healthz", key=None)
    assert (status, body) == (200, {"status": "ok", "connections": 0})
    assert headers["Content-Type"] == "application/json"
    status, headers, _ = await http(hub_server, "HEAD", "/healthz", key=None)
    assert (status, headers["Content-Type"]) == (200, "application/json")
    status, headers, _ = await http(hub_server, "POST", "/healthz", {}, key=None)
    assert (status, headers["Allow"]) == (405, "GET, HEAD")


async def test_healthz_head_has_the_content_length_of_get(hub_server: HubServer) -> None:
    """HEAD /healthz announces the length GET's body has (RFC 9110 §9.3.2), with no body."""
    _, get_headers, health = await http(hub_server, "GET", "/healthz", key=None)
    status, head_headers, body = await http(hub_server, "HEAD", "/healthz", key=None)
    assert (status, body) == (200, b"")
    assert head_headers["Content-Length"] == get_headers["Content-Length"]
    assert int(head_headers["Content-Length"]) == len(orjson.dumps(health)) > 0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic dGVzdC1hcGkta2V5"},
        {"X-API-Key": "nope"},
    ],
)
async def test_api_key_required(hub_server: HubServer, headers: dict[str, str]) -> None:
    """Without the right key every /api call is 401 with a JSON error."""
    for method, path in [("GET", "/api/channels"), ("POST", "/api/publish"), ("GET", "/api/nope")]:
        status, response_headers, body = await http(
            hub_server, method, path, {}, key=None, headers=headers
        )
        assert status == 401
        assert body == {"error": {"code": 103, "message": "unauthorized"}}
        assert response_headers["WWW-Authenticate"] == "Bearer"


async def test_x_api_key_header_works(hub_server: HubServer) -> None:
    """The key may also come as X-API-Key."""
    status, _, body = await http(
        hub_server, "GET", "/api/channels", key=None, headers={"X-API-Key": "test-api-key"}
    )
    assert (status, body) == (200, {"channels": []})


async def test_publish_and_history(hub_server: HubServer) -> None:
    """POST /api/publish stores with an offset; GET /api/history returns it; ids dedupe."""
    status, _, body = await http(
        hub_server,
        "POST",
        "/api/publish",
        {"channel": "chat:lobby", "data": {"text": "hi"}, "message_id": "x1"},
    )
    assert status == 200 and body["channel"] == "chat:lobby" and body["offset"] == 1
    epoch = body["epoch"]
    _, _, again = await http(
        hub_server,
        "POST",
        "/api/publish",
        {"channel": "chat:lobby", "data": {"text": "hi"}, "message_id": "x1"},
    )
    assert again == {"channel": "chat:lobby", "offset": 1, "epoch": epoch, "duplicate": True}
    await http(
        hub_server,
        "POST",
        "/api/publish",
        {"channel": "chat:lobby", "data": 2, "info": {"by": "cron"}},
    )
    status, _, history = await http(hub_server, "GET", "/api/history/chat:lobby?limit=10")
    assert status == 200
    assert (history["channel"], history["offset"], history["epoch"]) == ("chat:lobby", 2, epoch)
    assert [(p["offset"], p["data"]) for p in history["publications"]] == [
        (1, {"text": "hi"}),
        (2, 2),
    ]
    assert history["publications"][1]["info"] == {"by": "cron"}
    _, _, page = await http(
        hub_server, "GET", f"/api/history/chat%3Alobby?since_offset=1&since_epoch={epoch}"
    )
    assert [p["offset"] for p in page["publications"]] == [2]
    status, _, gone = await http(
        hub_server, "GET", "/api/history/chat:lobby?since_offset=1&since_epoch=old"
    )
    assert (status, gone["error"]["code"]) == (410, 116)


async def test_server_only_namespace_accepts_api_publish(hub_server: HubServer) -> None:
    """The API publishes where clients may not (ticker); ephemeral gets no offset."""
    status, _, body = await http(
        hub_server, "POST", "/api/publish", {"channel": "ticker:AAPL", "data": {"p": 1}}
    )
    assert status == 200 and body["offset"] == 1
    status, _, body = await http(
        hub_server,
        "POST",
        "/api/publish",
        {"channel": "chat:a", "data": "typing", "ephemeral": True},
    )
    assert (status, body) == (200, {"channel": "chat:a"})


async def test_broadcast(hub_server: HubServer) -> None:
    """POST /api/broadcast publishes to every channel and reports each position."""
    status, _, body = await http(
        hub_server,
        "POST",
        "/api/broadcast",
        {"channels": ["chat:a", "chat:b", "chat:a"], "data": "x"},
    )
    assert status == 200
    assert [(r["channel"], r["offset"]) for r in body["results"]] == [
        ("chat:a", 1),
        ("chat:b", 1),
        ("chat:a", 2),
    ]
    _, _, channels = await http(hub_server, "GET", "/api/channels")
    assert [(c["channel"], c["subscribers"], c["offset"]) for c in channels["channels"]] == [
        ("chat:a", 0, 2),
        ("chat:b", 0, 1),
    ]
    assert channels["channels"][1]["epoch"] == body["results"][1]["epoch"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "bad request: body is not valid JSON"),
        (b"[1, 2]", "bad request: body must be a JSON object"),
        (b'{"data": 1}', "bad request: channel must be a non-empty string"),
        (b'{"channel": "chat:a"}', "bad request: data is required"),
        (
            b'{"channel": "chat:a", "data": 1, "message_id": 7}',
            "bad request: message_id must be a string of 1 to 64 characters",
        ),
    ],
)
async def test_bad_json_is_400_with_a_message(
    hub_server: HubServer, raw: bytes, message: str
) -> None:
    """Bad bodies get 400 and a message saying what is wrong."""
    status, _, body = await http(hub_server, "POST", "/api/publish", raw=raw)
    assert status == 400
    assert body == {"error": {"code": 101, "message": message}}


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "code"),
    [
        ("POST", "/api/publish", {"channel": "nonamespace", "data": 1}, 400, 107),
        ("POST", "/api/publish", {"channel": "nope:x", "data": 1}, 400, 108),
        ("POST", "/api/publish", {"channel": "chat:a", "data": "x" * 70000}, 413, 114),
        ("POST", "/api/broadcast", {"channels": [], "data": 1}, 400, 101),
        ("POST", "/api/broadcast", {"channels": "chat:a", "data": 1}, 400, 101),
        ("GET", "/api/presence/ticker:X", None, 404, 115),
        ("GET", "/api/history/chat:a?limit=x", None, 400, 101),
        ("GET", "/api/history/chat:a?since_offset=1", None, 400, 101),
        ("GET", "/api/nope", None, 404, 101),
        ("GET", "/api/presence", None, 404, 101),
        ("GET", "/api/channels/extra", None, 404, 101),
        ("GET", "/api/publish", None, 405, 101),
        ("DELETE", "/api/channels", None, 405, 101),
    ],
)
async def test_errors(
    hub_server: HubServer, method: str, path: str, payload: Any, status: int, code: int
) -> None:
    """Each refusal has its HTTP status, a documented hub error code and the JSON shape of
    docs/http-api.md (``{"error": {"code", "message"}}``, nothing else); a 405 says Allow."""
    answer_status, headers, body = await http(hub_server, method, path, payload)
    assert (answer_status, body["error"]["code"]) == (status, code)
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"
    assert list(body) == ["error"] and sorted(body["error"]) == ["code", "message"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if status == 405:
        expected = "POST" if path in ("/api/publish", "/api/broadcast") else "GET"
        assert headers["Allow"] == expected


async def test_other_paths_are_not_the_apis(hub_server: HubServer) -> None:
    """Paths outside /api and /healthz fall through to the server, which has nothing there:
    404 in plain text, not an API error."""
    status, headers, body = await http(hub_server, "GET", "/apix", key=None)
    assert status == 404 and body == b"Not Found\n"
    assert headers["Content-Type"].startswith("text/plain")


async def test_body_over_the_request_limit_is_413() -> None:
    """A body over ``max_request_size`` is refused with 413 before the API reads it, in the
    API's JSON error shape (error 114, too large)."""
    server = await start_demo_hub(
        "127.0.0.1", 0, ephemeral=True, api_key="test-api-key", max_request_size=4096
    )
    try:
        raw = orjson.dumps({"channel": "chat:a", "data": "x" * 5000})
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        # One write, so that the whole request is read before the refusal closes the socket.
        writer.write(
            b"POST /api/publish HTTP/1.1\r\nHost: h\r\nX-API-Key: test-api-key\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(raw), raw)
        )
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 413 ")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"\r\ncontent-type: application/json" in head.lower()
        error = orjson.loads(body)["error"]
        assert error["code"] == 114 and "too large" in error["message"].lower()
        publications, _ = await server.hub.history("chat:a")
        assert list(publications) == []
    finally:
        await server.close()


async def test_stats_and_presence(hub_server: HubServer) -> None:
    """GET /api/stats returns the counters; presence of an empty channel is empty."""
    await http(hub_server, "POST", "/api/publish", {"channel": "chat:a", "data": 1})
    status, _, stats = await http(hub_server, "GET", "/api/stats")
    assert status == 200 and stats["publications"] == 1
    _, _, presence = await http(hub_server, "GET", "/api/presence/chat:a")
    assert presence == {"channel": "chat:a", "clients": []}


async def test_a_request_the_transport_cannot_read_gets_a_json_400() -> None:
    """Garbage instead of an HTTP request is answered 400 in the API's JSON shape too."""
    server = await start_demo_hub("127.0.0.1", 0, ephemeral=True, api_key="test-api-key")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /api/stats HTTP/1.1\r\nHost h\r\n\r\n")  # header without ':'
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 400 ")
        error = orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]
        assert error["code"] == 101 and error["message"]
    finally:
        await server.close()
