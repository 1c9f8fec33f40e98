"""A bare passthrough proxy: aiohttp server + rastos' lean upstream client, no analysis, no
scheduling (round-robin), no accounting. Benchmarks run it beside the gateway to show what
HTTP plumbing alone costs on the machine, so the gateway's own share is visible.

    python bench/bare_proxy.py --port 9100 --upstreams http://127.0.0.1:9000,http://127.0.0.1:9001
"""

from __future__ import annotations

import argparse
import asyncio
import itertools

import uvloop
from aiohttp import web

from rastos.gateway.upstream import UpstreamPool


def make_app(upstreams: list[str]) -> web.Application:
    pool = UpstreamPool()
    rr = itertools.cycle(upstreams)

    async def proxy(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        ex = await pool.request(next(rr), "POST", request.raw_path, [("content-type", "application/json")], raw)
        if b"text/event-stream" not in (ex.header(b"content-type") or "").encode():
            return web.Response(status=ex.status, body=await ex.read(), content_type="application/json")
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        tr = request.transport
        assert tr is not None
        ex.set_sink(lambda c: tr.write(b"%x\r\n%b\r\n" % (len(c), c)))
        await ex.done
        try:
            await resp.write_eof()
        except ConnectionResetError:  # the client read [DONE] and left first: not an error
            pass
        return resp

    async def ready(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_post("/v1/chat/completions", proxy)
    app.router.add_get("/ready", ready)
    return app


async def serve(port: int, upstreams: list[str]) -> None:
    runner = web.AppRunner(make_app(upstreams), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstreams", required=True)
    args = ap.parse_args()
    uvloop.run(serve(args.port, [u for u in args.upstreams.split(",") if u]))


if __name__ == "__main__":
    main()
