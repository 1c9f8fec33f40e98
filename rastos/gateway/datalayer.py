"""The gateway's view of its endpoints: metrics scraping, health, model discovery.

One scrape loop per endpoint reads ``/metrics`` every ``scrape_interval_ms`` and writes the
routing metrics with their time into the fleet state (a failed scrape leaves the old values
and their old time, so staleness is explicit: scorers see ``scraped_at``). One health loop
probes ``/health``; traffic reports failures passively. After ``eject_after_failures``
consecutive failures (probes or requests) an endpoint is ejected (``healthy = False``) and
only probes can bring it back: the first successful probe reinstates it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp

from rastos.gateway.config import EndpointSpec, GatewaySettings
from rastos.gateway.scrape import parse_metrics
from rastos.sched.fleet import Endpoint, FleetState

__all__ = ["DataLayer"]

log = logging.getLogger(__name__)


class DataLayer:
    """Owns the fleet state's scraped and health columns."""

    def __init__(self, settings: GatewaySettings, specs: list[EndpointSpec], *, clock=time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.fleet = FleetState()
        self.specs: list[EndpointSpec] = []
        for spec in specs:
            self.add(spec)
        self.failures: list[int] = [0] * len(self.fleet)
        self.scrape_errors: list[int] = [0] * len(self.fleet)
        self.prefix_hits: list[float] = [0.0] * len(self.fleet)
        self.prefix_queries: list[float] = [0.0] * len(self.fleet)
        self.adapters: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    def add(self, spec: EndpointSpec) -> Endpoint:
        ep = Endpoint(
            url=spec.url,
            name=spec.name or "",
            models=frozenset(spec.models),
            engine_type=spec.engine_type,
            labels=dict(spec.labels),
            role=spec.role,
        )
        self.specs.append(spec)
        return self.fleet.add(ep)

    # ------------------------------------------------------------------ lifecycle
    async def start(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        if self.settings.discover_models:
            await asyncio.gather(*(self.discover(i) for i in range(len(self.fleet))))
        await asyncio.gather(*(self.scrape_once(i) for i in range(len(self.fleet))))
        for i in range(len(self.fleet)):
            self._tasks.append(asyncio.create_task(self._scrape_loop(i)))
        self._tasks.append(asyncio.create_task(self._health_loop()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()

    # ------------------------------------------------------------------ discovery
    async def discover(self, i: int) -> None:
        """Learn models and LoRA adapters from ``/v1/models`` (configured models are kept)."""
        ep = self.fleet.endpoints[i]
        assert self._session is not None
        try:
            async with self._session.get(ep.url + "/v1/models", timeout=self._timeout()) as r:
                if r.status != 200:
                    return
                data = await r.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.warning("model discovery on %s failed: %s", ep.name, exc)
            return
        models = set(self.specs[i].models)
        for m in data.get("data", []) if isinstance(data, dict) else []:
            if isinstance(m, dict) and isinstance(m.get("id"), str):
                models.add(m["id"])
                if m.get("parent"):
                    self.adapters.add(m["id"])
        if models != set(ep.models):
            self.fleet.set_models(i, models)

    # ------------------------------------------------------------------ scraping
    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.settings.health_timeout_ms / 1e3)

    async def scrape_once(self, i: int) -> bool:
        ep = self.fleet.endpoints[i]
        assert self._session is not None
        try:
            async with self._session.get(ep.url + "/metrics", timeout=self._timeout()) as r:
                if r.status != 200:
                    raise aiohttp.ClientResponseError(r.request_info, (), status=r.status)
                text = await r.text()
            s = parse_metrics(text, ep.engine_type)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            self.scrape_errors[i] += 1
            log.debug("scrape of %s failed: %s", ep.name, exc)
            return False
        f = self.fleet
        f.queue[i] = s.queue
        f.running[i] = s.running
        f.kv_usage[i] = s.kv_usage
        f.scraped_at[i] = self.clock()
        if s.block_size:
            f.set_cache_info(i, s.block_size, s.num_gpu_blocks)
        if "lora" in s.seen:
            f.lora_running[i] = s.lora_running
            f.lora_waiting[i] = s.lora_waiting
            f.max_loras[i] = s.max_loras
        self.prefix_hits[i] = s.prefix_hits
        self.prefix_queries[i] = s.prefix_queries
        return True

    async def _scrape_loop(self, i: int) -> None:
        interval = self.settings.scrape_interval_ms / 1e3
        while True:
            t0 = self.clock()
            await self.scrape_once(i)
            await asyncio.sleep(max(0.0, interval - (self.clock() - t0)))

    # ------------------------------------------------------------------ health
    async def probe(self, i: int) -> bool:
        ep = self.fleet.endpoints[i]
        assert self._session is not None
        try:
            async with self._session.get(ep.url + "/health", timeout=self._timeout()) as r:
                ok = r.status == 200
                await r.read()
        except (TimeoutError, aiohttp.ClientError):
            ok = False
        if ok:
            self.report_success(i)
            if not self.fleet.healthy[i] and self.settings.discover_models and not self.fleet.endpoints[i].models:
                await self.discover(i)
        else:
            self.report_failure(i)
        return ok

    async def _health_loop(self) -> None:
        interval = self.settings.health_check_interval_ms / 1e3
        while True:
            await asyncio.gather(*(self.probe(i) for i in range(len(self.fleet))))
            await asyncio.sleep(interval)

    def report_failure(self, i: int) -> None:
        self.failures[i] += 1
        if self.fleet.healthy[i] and self.failures[i] >= self.settings.eject_after_failures:
            self.fleet.healthy[i] = False
            log.warning(
                "endpoint %s ejected after %d consecutive failures", self.fleet.endpoints[i].name, self.failures[i]
            )

    def report_success(self, i: int) -> None:
        self.failures[i] = 0
        if not self.fleet.healthy[i]:
            self.fleet.healthy[i] = True
            log.warning("endpoint %s is back", self.fleet.endpoints[i].name)

    def is_adapter(self, model: str) -> bool:
        return model in self.adapters
