"""``wshub sub`` and ``wshub pub``: a hub's channels from the shell.

``wshub sub URL CHANNEL...`` prints every publication of the channels as one JSON line::

    {"channel":"chat:lobby","offset":7,"epoch":"k3J9xQpL","time":1765000000.5,"data":{...},
     "info":{"client":"...","user":"alice"}}

(``info``, who published it, is left out for publications made by the server). It is a
:class:`~wshub.hub.client.HubClient`: it reconnects by itself and resumes each channel after
the last offset it printed, so a hub restart or a cut loses and repeats nothing; when the hub
cannot recover (the history no longer reaches back, a new epoch) it says so in one line on
standard error and goes on with the publications after the gap. It runs until Ctrl-C or
SIGTERM (exit 0, quietly) or until ``--count`` publications were printed.

``wshub pub URL CHANNEL DATA`` makes one publication and prints its offset. DATA is JSON
(``'{"text": "hi"}'``, ``42``, ``'"a string"'``); ``--text`` sends DATA as a string instead,
and DATA ``-`` reads it from standard input. Two ways in:

* over the WebSocket (URL ``ws://``/``wss://``), as the user of ``--token`` or anonymously.
  Namespaces whose publish policy is ``subscribers`` need a subscription first: when the hub
  answers 110 (not subscribed), the command subscribes and publishes again;
* through the HTTP API with ``--api-key`` (docs/http-api.md): URL is the hub's base URL
  (``http://host:port``, or with a path prefix behind a proxy: ``/api/publish`` is appended)
  or its WebSocket URL, whose path is then dropped (the API is on the same port, at ``/api/``).

Exit statuses as in :mod:`.common`: 2 for bad input (DATA not JSON, a bad URL), 1 when the
hub could not be reached or refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from wshub.exceptions import HubError, InvalidHandshake, InvalidURI, WSHubError
from wshub.hub.client import HubClient, Publication, Subscription
from wshub.hub.wire import ErrorCode
from wshub.protocol.uri import parse_uri

from .common import (
    EXIT_OK,
    CommandError,
    add_command,
    describe,
    run_command,
    tls_context,
    until_stopped,
    usage_error,
    warn,
)

__all__ = ["add_parsers", "api_publish_url", "publication_line"]

#: Seconds to wait for the HTTP API's answer.
HTTP_TIMEOUT = 30.0


def _at_least(minimum: int) -> Any:
    """An argparse type for a whole number ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def add_parsers(commands: Any) -> None:
    """Add ``sub`` and ``pub`` to the subcommands of ``wshub``."""
    sub = add_command(
        commands,
        "sub",
        func=sub_command,
        help="print a hub channel's publications as JSON lines",
        description=(
            "Subscribe to channels of a hub and print each publication as one JSON line "
            '({"channel", "offset", "epoch", "time", "data", "info"}). Reconnects and '
            "recovers missed publications by itself; runs until Ctrl-C or --count."
        ),
    )
    sub.add_argument("url", metavar="URL", help="the hub's ws:// or wss:// URL")
    sub.add_argument("channels", nargs="+", metavar="CHANNEL", help="e.g. chat:lobby")
    sub.add_argument("--token", help="connection token (JWT); default: anonymous")
    sub.add_argument(
        "--count", type=_at_least(1), metavar="N", help="exit 0 after N publications in all"
    )
    sub.add_argument(
        "--recent",
        type=_at_least(0),
        default=0,
        metavar="N",
        help="also print each channel's last N publications first (default 0)",
    )

    pub = add_command(
        commands,
        "pub",
        func=pub_command,
        help="publish one message to a hub channel, print its offset",
        description=(
            "Publish DATA (JSON; '-' reads standard input) to CHANNEL and print its offset: "
            "over the WebSocket (URL ws:// or wss://, --token or anonymous) or through the "
            "HTTP API with --api-key (URL: the hub's http(s):// base URL, or its ws(s):// URL)."
        ),
    )
    pub.add_argument("url", metavar="URL", help="the hub's URL (see above)")
    pub.add_argument("channel", metavar="CHANNEL", help="e.g. chat:lobby")
    pub.add_argument("data", metavar="DATA", help="a JSON value, or '-' for standard input")
    pub.add_argument("--text", action="store_true", help="send DATA as a JSON string")
    way = pub.add_mutually_exclusive_group()
    way.add_argument("--token", help="connection token (JWT) for the WebSocket")
    way.add_argument("--api-key", help="publish through the HTTP API with this key")
    pub.add_argument(
        "--message-id",
        metavar="ID",
        help="1-64 characters: a retry with the same id is not published twice",
    )


# -- wshub sub -----------------------------------------------------------------------------------


def publication_line(pub: Publication) -> bytes:
    """The JSON line ``wshub sub`` prints for ``pub`` (with its newline)."""
    obj: dict[str, Any] = {
        "channel": pub.channel,
        "offset": pub.offset,
        "epoch": pub.epoch,
        "time": pub.time,
        "data": pub.data,
    }
    if pub.info is not None:
        obj["info"] = pub.info.to_json()
    return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)


def _hub_url(url: str) -> str:
    """``url`` checked as a ``ws://``/``wss://`` URL (exit 2 otherwise)."""
    try:
        parse_uri(url)
    except InvalidURI as exc:
        raise usage_error(str(exc)) from None
    return url


def _hub_client(args: argparse.Namespace) -> HubClient:
    url = _hub_url(args.url)
    ssl = tls_context(args, secure=parse_uri(url).secure)
    return HubClient(url, args.token, ssl=ssl)


async def _connect(client: HubClient) -> None:
    try:
        await client.connect()
    except HubError as exc:
        raise CommandError(f"the hub refused the connection: {exc}") from None
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise CommandError(f"cannot connect to {client.url}: {describe(exc)}") from None


def sub_command(args: argparse.Namespace) -> int:
    """Run ``wshub sub``; returns the exit status."""
    return run_command("wshub sub", lambda stop: _sub(args, stop))


class Printer:
    """Writes publication lines to standard output; counts them against ``--count``."""

    def __init__(self, count: int | None, done: asyncio.Event) -> None:
        self.left = count
        self.done = done

    def write(self, pub: Publication) -> None:
        if self.done.is_set():
            return
        try:
            sys.stdout.buffer.write(publication_line(pub))
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            # The reader went away (``| head -1``): nothing more to do, and nothing to say.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            self.done.set()
            return
        if self.left is not None:
            self.left -= 1
            if self.left <= 0:
                self.done.set()


async def _sub(args: argparse.Namespace, stop: asyncio.Event) -> int:
    client = _hub_client(args)
    printer = Printer(args.count, stop)
    readers: list[asyncio.Task[None]] = []
    try:
        # Ctrl-C while connecting or subscribing (a hub that went away) ends it quietly too.
        if not await until_stopped(stop, _start(client, args, printer, readers)):
            return EXIT_OK
        stopper = asyncio.get_running_loop().create_task(stop.wait())
        await asyncio.wait([stopper, *readers], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for reader in readers:
            if reader.done() and not reader.cancelled():
                reader.result()  # a subscription that ended with an error: raise it
        return EXIT_OK
    finally:
        for reader in readers:
            reader.cancel()
        await client.close()


async def _start(
    client: HubClient,
    args: argparse.Namespace,
    printer: Printer,
    readers: list[asyncio.Task[None]],
) -> bool:
    """Connect, subscribe to every channel and start a reader for each."""
    await _connect(client)
    for channel in args.channels:
        try:
            subscription = await client.subscribe(channel, recent=args.recent)
        except WSHubError as exc:
            raise CommandError(f"cannot subscribe to {channel}: {exc}") from None
        readers.append(asyncio.get_running_loop().create_task(_read(subscription, printer)))
    return True


async def _read(subscription: Subscription, printer: Printer) -> None:
    """Print a subscription's publications until it ends.

    Raises:
        CommandError: the hub ended the subscription, or the client gave up reconnecting.
    """
    while True:
        try:
            async for pub in subscription:
                printer.write(pub)
            raise CommandError(f"{subscription.channel}: the subscription ended")
        except HubError as exc:
            if exc.code != ErrorCode.UNRECOVERABLE:
                raise CommandError(f"{subscription.channel}: {exc}") from None
            warn("wshub sub", f"{subscription.channel}: publications were lost ({exc.message})")
        except WSHubError as exc:  # the connection is gone for good
            raise CommandError(f"{subscription.channel}: {exc}") from None


# -- wshub pub -----------------------------------------------------------------------------------


def _payload(args: argparse.Namespace) -> Any:
    """DATA as the value to publish (exit 2 when it is not JSON and not ``--text``)."""
    data: str = sys.stdin.read() if args.data == "-" else args.data
    if args.text:
        return data.removesuffix("\n") if args.data == "-" else data
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise usage_error("DATA is not JSON (use --text to publish it as a string)") from None


def api_publish_url(url: str) -> str:
    """The ``/api/publish`` URL of a hub given by its base URL or its WebSocket URL.

    ``http://h:8765`` and ``http://h:8765/prefix`` keep their path (a prefix behind a
    proxy); ``ws://h:8765/ws`` becomes ``http://h:8765``, since the API is served on the
    WebSocket endpoint's port, at ``/api/``.

    Raises:
        CommandError: not an http, https, ws or wss URL (exit 2).
    """
    parts = urlsplit(url)
    schemes = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
    if parts.scheme not in schemes or not parts.netloc:
        raise usage_error(f"{url!r} is not an http(s):// or ws(s):// URL")
    path = parts.path.rstrip("/") if parts.scheme.startswith("http") else ""
    return urlunsplit((schemes[parts.scheme], parts.netloc, path + "/api/publish", "", ""))


def pub_command(args: argparse.Namespace) -> int:
    """Run ``wshub pub``; returns the exit status."""
    return run_command("wshub pub", lambda stop: _pub(args, stop))


async def _pub(args: argparse.Namespace, stop: asyncio.Event) -> int:
    data = _payload(args)
    publish = _pub_http if args.api_key is not None else _pub_ws
    offset = await until_stopped(stop, publish(args, data))
    if offset is None:
        raise CommandError("interrupted: the publication may or may not have been made")
    print(offset, flush=True)
    return EXIT_OK


async def _pub_ws(args: argparse.Namespace, data: Any) -> int:
    client = _hub_client(args)
    await _connect(client)
    try:
        try:
            return await client.publish(args.channel, data, args.message_id)
        except HubError as exc:
            if exc.code != ErrorCode.NOT_SUBSCRIBED:
                raise
        # The namespace lets only subscribers publish: become one, then publish.
        await client.subscribe(args.channel, queue_size=2, fill_gaps=False)
        return await client.publish(args.channel, data, args.message_id)
    except WSHubError as exc:
        raise CommandError(f"the hub refused the publication: {exc}") from None
    finally:
        await client.close()


async def _pub_http(args: argparse.Namespace, data: Any) -> int:
    url = api_publish_url(args.url)
    ssl = tls_context(args, secure=url.startswith("https:"))
    body: dict[str, Any] = {"channel": args.channel, "data": data}
    if args.message_id is not None:
        body["message_id"] = args.message_id
    request = urllib.request.Request(
        url,
        data=orjson.dumps(body),
        method="POST",
        headers={"Authorization": f"Bearer {args.api_key}", "Content-Type": "application/json"},
    )

    def call() -> Any:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT, context=ssl) as response:
            return orjson.loads(response.read())

    try:
        result = await asyncio.to_thread(call)
    except urllib.error.HTTPError as exc:
        raise CommandError(f"the hub refused the publication: {_http_error(exc)}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise CommandError(f"cannot reach {url}: {describe(_as_exception(reason))}") from None
    if not isinstance(result, dict) or not isinstance(result.get("offset"), int):
        raise CommandError(f"unexpected answer from {url}")
    return int(result["offset"])


def _as_exception(reason: object) -> BaseException:
    return reason if isinstance(reason, BaseException) else Exception(str(reason))


def _http_error(exc: urllib.error.HTTPError) -> str:
    """``STATUS CODE: MESSAGE`` from the API's error body, or the status alone."""
    with contextlib.suppress(Exception):
        error = orjson.loads(exc.read())["error"]
        return f"HTTP {exc.code}, {error['code']}: {error['message']}"
    return f"HTTP {exc.code} {exc.reason}"
