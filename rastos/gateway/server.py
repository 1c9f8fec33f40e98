"""``rastos serve``: the OpenAI-compatible gateway in front of a fleet of model servers.

Routes: ``POST /v1/chat/completions`` and ``/v1/completions`` (routed, SSE passthrough),
``GET /v1/models`` (union over endpoints), ``/health`` (the process is up), ``/ready`` (at
least one endpoint is in rotation), ``/metrics`` (the gateway's own Prometheus metrics).
Errors are OpenAI JSON: malformed 400, unknown model 404, body too large 413, no healthy
endpoint 503 with ``Retry-After``; upstream errors are passed through as they came.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
from aiohttp import web

from rastos.analysis import RequestAnalyzer
from rastos.gateway.config import GatewayConfig
from rastos.gateway.datalayer import DataLayer
from rastos.gateway.observability import GatewayStats
from rastos.gateway.proxy import Proxy, error_response
from rastos.sched.config import build_scheduler, load_policy
from rastos.sched.scheduler import Scheduler

__all__ = ["Gateway"]

log = logging.getLogger(__name__)


class Gateway:
    """Data layer + scheduler + proxy behind one aiohttp application."""

    def __init__(self, config: GatewayConfig, scheduler: Scheduler | None = None) -> None:
        self.config = config
        s = config.gateway
        self.data = DataLayer(s, config.endpoints)
        if scheduler is None:
            scheduler = (
                build_scheduler(config.scheduler, where="scheduler")
                if config.scheduler is not None
                else load_policy(config.policy)
            )
        self.scheduler = scheduler
        self.analyzer = RequestAnalyzer(
            scheduler.block_tokens, bytes_per_token=s.bytes_per_token, is_adapter=self.data.is_adapter
        )
        self.stats = GatewayStats(self.data, scheduler)
        self.proxy = Proxy(self)
        self.started_at = time.time()
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def port(self) -> int:
        return self.config.gateway.port

    @property
    def url(self) -> str:
        return f"http://{self.config.gateway.host}:{self.config.gateway.port}"

    def _build_app(self) -> web.Application:
        # No middleware: each handler guards itself, so the hot path has no extra layer. A
        # catch-all route answers unknown paths (404) and wrong methods (405) in OpenAI JSON.
        app = web.Application(client_max_size=self.config.gateway.max_body_bytes)
        r = app.router
        r.add_post("/v1/chat/completions", self.proxy.chat)
        r.add_post("/v1/completions", self.proxy.completion)
        r.add_get("/v1/models", self._guard(self._models))
        r.add_get("/health", self._guard(self._health))
        r.add_get("/ready", self._guard(self._ready))
        r.add_get("/metrics", self._guard(self._metrics))
        self._paths = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/ready", "/metrics"}
        r.add_route("*", "/{tail:.*}", self._fallback)
        return app

    def _guard(self, handler: Any) -> Any:
        async def guarded(request: web.Request) -> web.StreamResponse:
            return await self._guarded(request, handler)

        return guarded

    async def _fallback(self, request: web.Request) -> web.Response:
        if request.path in self._paths:
            return error_response(405, f"Method {request.method} is not allowed on {request.path}.")
        return error_response(404, f"No route {request.path}.")

    async def start(self) -> None:
        conn = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=None, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(connector=conn, auto_decompress=False)
        await self.data.start(self._session)
        self._runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.gateway.host, self.config.gateway.port, reuse_address=True)
        await site.start()
        if self.config.gateway.port == 0:
            self.config.gateway.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.data.stop()
        self.proxy.pool.close()
        if self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------------ handlers
    async def _guarded(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge as exc:
            return error_response(413, f"Request body too large: {exc.text or 'over the limit'}.")
        except web.HTTPException as exc:
            if exc.status >= 400:
                return error_response(exc.status, exc.reason)
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:  # one bad request never takes the gateway down
            log.exception("unhandled error on %s", request.path)
            return error_response(500, f"Internal gateway error: {type(exc).__name__}: {exc}")

    async def _models(self, request: web.Request) -> web.Response:
        created = int(self.started_at)
        data = [
            {"id": m, "object": "model", "created": created, "owned_by": "rastos",
             "parent": None if m not in self.data.adapters else "", "root": m}
            for m in sorted(self.data.fleet.known_models())
        ]  # fmt: skip
        return web.json_response({"object": "list", "data": data})

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _ready(self, request: web.Request) -> web.Response:
        if self.data.fleet.healthy.any() and self.data.fleet.known_models():
            return web.Response(status=200)
        return error_response(503, "No endpoint is in rotation.", headers={"retry-after": "1"})

    async def _metrics(self, request: web.Request) -> web.Response:
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        resp = web.Response(body=self.stats.render())
        resp.headers["content-type"] = CONTENT_TYPE_LATEST
        return resp
