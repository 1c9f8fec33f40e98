"""Shared fixtures: in-process sim engines on free loopback ports, tiny profiles."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from rastos.engine.options import SimEngineOptions
from rastos.engine.profile import EngineProfile, load_profile
from rastos.engine.server import SimEngineServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_profile(**overrides: Any) -> EngineProfile:
    """The 8B/H100 timing with a small KV pool, so capacity effects show with few requests."""
    base = dict(num_gpu_blocks=257, max_model_len=4096)
    base.update(overrides)
    return load_profile("llama3-8b-h100").with_overrides(**base)


@asynccontextmanager
async def running_server(**kw: Any) -> AsyncIterator[SimEngineServer]:
    kw.setdefault("model", "sim-model")
    kw.setdefault("port", 0)
    kw.setdefault("time_scale", 0.02)
    server = SimEngineServer(SimEngineOptions(**kw))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def base_url(server: SimEngineServer) -> str:
    return f"http://127.0.0.1:{server.opts.port}"


@pytest.fixture
def server_factory() -> Callable[..., Any]:
    return running_server
