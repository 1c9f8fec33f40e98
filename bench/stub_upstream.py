"""A constant-time OpenAI-style upstream, for measuring what a proxy adds (benchmarks only).

It answers at once: a canned chat completion, or a canned SSE stream of N chunks written
back to back, plus the few routes a gateway probes (/health, /metrics with vLLM's names,
/v1/models). Nothing is simulated, so the difference between calling it directly and
through the gateway is the gateway's own cost.

    python bench/stub_upstream.py --port 9000 [--chunks 8]
"""

from __future__ import annotations

import argparse
import asyncio

import orjson
import uvloop
from aiohttp import web

METRICS = (
    b'vllm:num_requests_running{engine="0",model_name="m"} 0.0\n'
    b'vllm:num_requests_waiting{engine="0",model_name="m"} 0.0\n'
    b'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.0\n'
    b'vllm:cache_config_info{block_size="16",engine="0",num_gpu_blocks="28125"} 1.0\n'
)


def make_app(chunks: int) -> web.Application:
    usage = {"prompt_tokens": 100, "completion_tokens": chunks, "total_tokens": 100 + chunks}
    full = orjson.dumps({"id": "chatcmpl-x", "object": "chat.completion", "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "tok " * chunks}, "finish_reason": "length"}],
        "usage": usage})  # fmt: skip
    chunk = b'data: {"id":"chatcmpl-x","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n'

    async def chat(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        if not body.get("stream"):
            return web.Response(body=full, content_type="application/json")
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(chunks):
            await resp.write(chunk)
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def ok(request: web.Request) -> web.Response:
        return web.Response()

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=METRICS, content_type="text/plain")

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", ok)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/models", models)
    return app


async def serve(port: int, chunks: int) -> None:
    runner = web.AppRunner(make_app(chunks), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--chunks", type=int, default=8)
    args = ap.parse_args()
    uvloop.run(serve(args.port, args.chunks))


if __name__ == "__main__":
    main()
