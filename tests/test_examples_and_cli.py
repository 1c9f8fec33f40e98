"""The shipped examples load, `rastos serve` runs as a process, and the demo pipeline works."""

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from rastos.demo import DemoSpec, run_demo
from rastos.gateway.config import load_gateway_config
from rastos.sched.config import build_scheduler
from tests.conftest import base_url, free_port, running_server

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_are_valid(path):
    cfg = load_gateway_config(path)
    if cfg.scheduler is not None:
        build_scheduler(cfg.scheduler)


async def test_rastos_serve_quick_start_process():
    async with running_server() as a, running_server(seed=1) as b:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "rastos.cli", "serve", "--endpoints", f"{base_url(a)},{base_url(b)}",
             "--port", str(port), "--policy", "least-request"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
            assert "least-request policy, 2 endpoints" in line, line + proc.stderr.read()
            async with aiohttp.ClientSession() as s:
                body = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
                async with s.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as r:
                    assert r.status == 200 and (await r.json())["usage"]["completion_tokens"] <= 3
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(10) == 0


def test_rastos_serve_rejects_bad_invocations(tmp_path):
    r = subprocess.run([sys.executable, "-m", "rastos.cli", "serve"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "exactly one of --config" in r.stderr
    bad = tmp_path / "gw.yaml"
    bad.write_text("endpoints: [{url: 'http://x:1', role: sideways}]\n")
    r = subprocess.run([sys.executable, "-m", "rastos.cli", "serve", "--config", str(bad)],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "endpoints[0].role" in r.stderr


def test_demo_pipeline_small(tmp_path):
    """The demo's whole path (processes, gateway, workload, JSON, PNG) on a tiny workload."""
    spec = DemoSpec(engines=2, tenants=2, sessions_per_tenant=2, turns=2, system_words=300, question_words=10,
                    max_tokens=8, arrival_span=0.5, think_time=0.05, num_gpu_blocks=2048)  # fmt: skip
    out = tmp_path / "demo.json"
    summary = run_demo(spec, out)
    data = json.loads(out.read_text())
    assert set(data["policies"]) == {"round-robin", "default"}
    for s in data["policies"].values():
        assert s["requests_ok"] == 8 and s["requests_failed"] == 0
        assert {"ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_p50_s", "tpot_p90_s", "output_tokens_per_s",
                "prefix_hit_rate"} <= set(s)  # fmt: skip
        assert 0 < s["prefix_hit_rate"] <= 1
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert summary["default"]["requests_ok"] == 8
