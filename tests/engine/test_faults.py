"""Fault injection: per-request header, runtime changes, crash, slow start, hang."""

import asyncio
import subprocess
import sys
import time

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import base_url, free_port, running_server

CHAT = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


async def post(s: aiohttp.ClientSession, url: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    async with s.post(url, json=body, headers=headers or {}) as r:
        return r.status, await r.json()


async def test_forced_faults_by_header():
    async with running_server(max_model_len=4096, num_gpu_blocks=300) as srv:
        url = base_url(srv) + "/v1/chat/completions"
        async with aiohttp.ClientSession() as s:
            st_, body = await post(s, url, CHAT, {"x-rastos-fault": "server_error"})
            assert st_ == 500 and body["error"]["type"] == "InternalServerError"
            st_, body = await post(s, url, CHAT, {"x-rastos-fault": "rate_limit"})
            assert st_ == 429 and body["error"]["code"] == 429
            st_, body = await post(s, url, CHAT, {"x-rastos-fault": "context_length"})
            assert st_ == 400 and "maximum context length is 4096" in body["error"]["message"]
            st_, body = await post(s, url, CHAT)
            assert st_ == 200


async def test_error_rate_changes_at_run_time():
    async with running_server() as srv:
        url = base_url(srv) + "/v1/chat/completions"
        async with aiohttp.ClientSession() as s:
            statuses = [(await post(s, url, CHAT))[0] for _ in range(10)]
            assert statuses == [200] * 10
            async with s.post(
                base_url(srv) + "/admin/faults", json={"error_rate": 1.0, "error_kinds": ["rate_limit"]}
            ) as r:
                assert r.status == 200 and (await r.json())["error_rate"] == 1.0
            statuses = [(await post(s, url, CHAT))[0] for _ in range(10)]
            assert statuses == [429] * 10
            async with s.post(
                base_url(srv) + "/admin/faults", json={"error_rate": 0.5, "error_kinds": ["server_error"]}
            ) as r:
                assert r.status == 200
            statuses = [(await post(s, url, CHAT))[0] for _ in range(60)]
            assert 10 < statuses.count(500) < 50 and statuses.count(200) + statuses.count(500) == 60
            async with s.post(base_url(srv) + "/admin/faults", json={"error_rate": 7}) as r:
                assert r.status == 400 and "error_rate" in (await r.json())["error"]["message"]
            async with s.post(base_url(srv) + "/admin/faults", json={"unready": True, "error_rate": 0}) as r:
                assert r.status == 200
            async with s.get(base_url(srv) + "/health") as r:
                assert r.status == 503
            async with s.get(base_url(srv) + "/admin/faults") as r:
                assert (await r.json())["unready"] is True


async def test_disconnect_mid_stream():
    async with running_server() as srv:
        await_ok = {"model": "sim-model", "prompt": "x", "max_tokens": 50, "stream": True, "ignore_eos": True}
        async with aiohttp.ClientSession() as s:
            async with s.post(base_url(srv) + "/v1/completions", json=await_ok,
                              headers={"x-rastos-fault": "disconnect"}) as r:  # fmt: skip
                assert r.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    async for _ in r.content:
                        pass
        assert srv.engine.stats.request_success["abort"] == 1


async def test_hang_never_answers_until_the_client_gives_up():
    async with running_server() as srv:
        async with aiohttp.ClientSession() as s:
            with pytest.raises(asyncio.TimeoutError):
                async with s.post(base_url(srv) + "/v1/chat/completions", json=CHAT,
                                  headers={"x-rastos-fault": "hang"},
                                  timeout=aiohttp.ClientTimeout(total=0.3)):  # fmt: skip
                    pass
            assert (await post(s, base_url(srv) + "/v1/chat/completions", CHAT))[0] == 200


async def test_slowdown_makes_steps_longer():
    async with running_server(time_scale=0.01) as srv:
        async with aiohttp.ClientSession() as s:
            await post(s, base_url(srv) + "/v1/completions", {"model": "sim-model", "prompt": "x", "max_tokens": 20,
                                                              "ignore_eos": True})  # fmt: skip
            e2e_fast = srv.engine.stats.e2e.sum
            async with s.post(base_url(srv) + "/admin/faults", json={"slowdown": 3.0}):
                pass
            await post(s, base_url(srv) + "/v1/completions", {"model": "sim-model", "prompt": "x", "max_tokens": 20,
                                                              "ignore_eos": True})  # fmt: skip
            assert srv.engine.stats.e2e.sum - e2e_fast > 2.5 * e2e_fast


def _spawn(*args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rastos.cli", "sim-engine", "--port", str(port), "--model", "sim-model",
         "--time-scale", "0.02", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def _wait_line(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline()  # the server prints one line once its port is open
    assert "serving" in line, line + proc.stderr.read()
    return line


async def test_crash_after_n_requests_kills_the_process():
    proc, url = _spawn("--crash-after", "2")
    try:
        _wait_line(proc)
        async with aiohttp.ClientSession() as s:
            for _ in range(2):
                assert (await post(s, url + "/v1/chat/completions", CHAT))[0] == 200
            with pytest.raises(aiohttp.ClientError):
                await post(s, url + "/v1/chat/completions", CHAT)
        assert proc.wait(10) == 1
    finally:
        proc.kill()


def test_slow_start_opens_the_port_late():
    t0 = time.monotonic()
    proc, _url = _spawn("--startup-delay", "1.0")
    try:
        _wait_line(proc)
        assert time.monotonic() - t0 >= 1.0
    finally:
        proc.terminate()
        proc.wait(10)


def test_cli_rejects_bad_flags_with_a_clear_message():
    r = subprocess.run([sys.executable, "-m", "rastos.cli", "sim-engine", "--engine-type", "trt"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "engine-type" in r.stderr
    r = subprocess.run([sys.executable, "-m", "rastos.cli", "sim-engine", "--profile", "h999"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "unknown engine profile" in r.stderr


def test_sigterm_stops_cleanly():
    proc, _ = _spawn()
    _wait_line(proc)
    proc.terminate()
    assert proc.wait(10) == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["sim-model", "other"]) | json_values,
        "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system"]) | json_values},
                                                   optional={"content": json_values}), max_size=3) | json_values,
        "prompt": json_values,
        "max_tokens": st.integers(-3, 10**7) | json_values,
        "stream": st.booleans() | json_values,
        "n": st.integers(-1, 4) | json_values,
        "stream_options": json_values,
    },
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, route=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/tokenize"]))
def test_any_json_body_gets_a_clean_answer(body, route, fuzz_server):
    loop, url = fuzz_server

    async def go() -> int:
        async with aiohttp.ClientSession() as s, s.post(url + route, json=body) as r:
            await r.read()
            return r.status

    status = loop.run_until_complete(go())
    assert status in (200, 400, 404), (status, body)


@pytest.fixture(scope="module")
def fuzz_server():
    loop = asyncio.new_event_loop()
    cm = running_server(time_scale=0.001, max_model_len=2048, num_gpu_blocks=2000)
    srv = loop.run_until_complete(cm.__aenter__())
    try:
        yield loop, base_url(srv)
    finally:
        loop.run_until_complete(cm.__aexit__(None, None, None))
        loop.close()
