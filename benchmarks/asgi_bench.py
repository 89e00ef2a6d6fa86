"""The cost of ASGI: the hub mounted in Starlette on uvicorn, against ``wshub serve``.

The load of ``hub_bench.py`` (a feed inside the server process publishing to ``--channels``
ticker channels ``--rate`` times a second, ``--subscribers`` wshub clients each subscribed to
every channel, server on CPU 1 and clients on CPU 0), served two ways, runs interleaved:

* ``wshub serve``: ``start_hub`` on wshub's own transport (``hub_bench.py``'s server);
* ``uvicorn+Starlette``: the same ``Hub`` (in-memory history, anonymous clients) as
  :class:`wshub.hub.asgi.HubASGIApp`, mounted in a Starlette app that also has a page of
  its own, served by uvicorn (uvloop, its default WebSocket implementation, no compression).

The load is fixed, so what is compared is the server's CPU time per delivered push (and
whether every offered push arrived: a server that saturates its CPU falls behind).

Usage::

    python benchmarks/asgi_bench.py --subscribers 200 --channels 10 --rate 20 --seconds 5
"""

from __future__ import annotations

import asyncio
import os
import statistics
from typing import Any

import hub_bench  # beside this file


def serve_asgi(port: int, channels: int, rate: float) -> None:
    """The hub in a Starlette app on uvicorn, and the feed (the server process)."""
    import uvicorn
    import uvloop
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    from wshub.apps.chat import demo_config
    from wshub.hub import Authenticator, Hub, MemoryHistory
    from wshub.hub.asgi import HubASGIApp

    hub = Hub(
        history=MemoryHistory(),
        registry=demo_config().registry(),  # ticker: conflated, server-only
        auth=Authenticator(allow_anonymous=True, anonymous_permissions=["ticker:*:s"]),
    )

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("the app's own page")

    # Mounted at the root so that the clients' URL (/ws) is the standalone server's.
    app = Starlette(routes=[Route("/", home), Mount("", app=HubASGIApp(hub))])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="none",
        log_level="warning",
        ws_per_message_deflate=False,
    )

    async def main() -> None:
        async with hub:
            task = asyncio.get_running_loop().create_task(hub_bench.feed(hub, channels, rate))
            try:
                await uvicorn.Server(config).serve()
            finally:
                task.cancel()

    uvloop.run(main())


def main() -> None:
    args = hub_bench.arguments(__doc__ or "")
    if args.serve:
        serve_asgi(args.serve, args.channels, args.rate)
        return
    os.sched_setaffinity(0, {0})
    offered = args.subscribers * args.channels * args.rate
    servers = {"wshub serve": hub_bench.__file__, "uvicorn+Starlette": __file__}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    for rep in range(args.reps):
        for name, script in servers.items():
            r = hub_bench.run_once(args, script)
            runs[name].append(r)
            print(
                f"rep {rep + 1} {name:>17}: {r['deliveries_per_s']:9,.0f} deliveries/s "
                f"(offered {offered:,.0f}), server CPU {r['server_cpu_pct']:5.1f}%, "
                f"{r['cpu_us_per_delivery']:5.2f} µs/delivery",
                flush=True,
            )
    print("\n| server | deliveries/s (offered) | server CPU | CPU µs per delivery |")
    print("|---|---|---|---|")
    for name, results in runs.items():
        rate = statistics.median(r["deliveries_per_s"] for r in results)
        cpu = statistics.median(r["server_cpu_pct"] for r in results)
        cost = statistics.median(r["cpu_us_per_delivery"] for r in results)
        print(f"| {name} | {rate:,.0f} ({offered:,.0f}) | {cpu:.0f}% | {cost:.2f} |")


if __name__ == "__main__":
    main()
