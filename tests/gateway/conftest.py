"""A gateway in front of in-process sim engines, all on loopback in the test's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from rastos.engine.server import SimEngineServer
from rastos.gateway.config import validate_gateway_config
from rastos.gateway.server import Gateway
from tests.conftest import base_url, running_server


@asynccontextmanager
async def fleet_and_gateway(
    n: int = 2,
    *,
    engine: dict[str, Any] | None = None,
    gateway: dict[str, Any] | None = None,
    policy: str = "default",
    scheduler: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[Gateway, list[SimEngineServer]]]:
    async with AsyncExitStack() as stack:
        engines = [await stack.enter_async_context(running_server(seed=i, **(engine or {}))) for i in range(n)]
        cfg: dict[str, Any] = {
            "gateway": {"port": 0, "scrape_interval_ms": 20, "health_check_interval_ms": 100, **(gateway or {})},
            "endpoints": [{"url": base_url(e)} for e in engines],
            "policy": policy,
        }
        if scheduler is not None:
            cfg["scheduler"] = scheduler
        gw = Gateway(validate_gateway_config(cfg, "test"))
        await gw.start()
        try:
            yield gw, engines
        finally:
            await gw.stop()
