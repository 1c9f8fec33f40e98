"""Starting and stopping rastos processes (sim engines, gateways) for demos and benchmarks.

Children are started in their own process group and always terminated on exit, Ctrl-C
included, so a demo never leaves a server behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import aiohttp

__all__ = ["ProcessGroup", "free_port", "scrape_metrics", "wait_ready"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProcessGroup:
    """A set of child processes that die together."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, args: Sequence[str], *, quiet: bool = True) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            [sys.executable, "-m", "rastos.cli", *args],
            stdout=subprocess.DEVNULL if quiet else None,
            stderr=subprocess.DEVNULL if quiet else None,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def stop(self, timeout: float = 5.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                with _suppress():
                    os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with _suppress():
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()

    @contextmanager
    def running(self) -> Iterator[ProcessGroup]:
        try:
            yield self
        finally:
            self.stop()


@contextmanager
def _suppress() -> Iterator[None]:
    try:
        yield
    except ProcessLookupError:
        pass


async def wait_ready(
    url: str, timeout: float = 30.0, path: str = "/health", proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``url + path`` until it answers 200 (servers start in their own time); fail at
    once if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the process serving {url} exited with status {proc.returncode}")
            try:
                async with s.get(url + path, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not become ready within {timeout:.0f} s")
            await asyncio.sleep(0.1)


async def scrape_metrics(url: str) -> dict[str, float]:
    """Flat ``{sample name: value}`` of a Prometheus endpoint (labels summed away)."""
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        text = await r.text()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            out[smp.name] = out.get(smp.name, 0.0) + smp.value
    return out
