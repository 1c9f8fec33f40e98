"""The gateway over real HTTP: SDK streaming and not, errors, retries, routing, metrics."""

import asyncio
import subprocess
import sys

import aiohttp
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rastos.errors import ConfigError
from rastos.gateway.config import load_gateway_config
from tests.conftest import free_port
from tests.gateway.conftest import fleet_and_gateway

CHAT = {"model": "sim-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}


def sdk(gw) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="none", max_retries=0)


async def post(url: str, data, headers=None) -> tuple[int, dict, dict]:
    async with aiohttp.ClientSession() as s:
        kw = {"json": data} if not isinstance(data, (bytes, str)) else {"data": data}
        async with s.post(url, headers=headers or {}, **kw) as r:
            return r.status, await r.json(content_type=None), dict(r.headers)


async def test_openai_sdk_through_the_gateway_streaming_and_not():
    async with fleet_and_gateway(2) as (gw, engines):
        client = sdk(gw)
        msgs = [{"role": "system", "content": "You route traffic. " * 50}, {"role": "user", "content": "Go."}]
        r = await client.chat.completions.create(model="sim-model", messages=msgs, max_tokens=12, seed=3)
        assert r.choices[0].message.content and r.usage.completion_tokens <= 12
        stream = await client.chat.completions.create(model="sim-model", messages=msgs, max_tokens=12, seed=3,
                                                      stream=True, stream_options={"include_usage": True})  # fmt: skip
        text, usage = [], None
        async for chunk in stream:
            usage = chunk.usage or usage
            text += [c.delta.content or "" for c in chunk.choices]
        assert "".join(text) == r.choices[0].message.content
        assert usage.prompt_tokens_details.cached_tokens > 0  # routed back to the warm engine
        c = await client.completions.create(model="sim-model", prompt="Once upon a time", max_tokens=4)
        assert c.object == "text_completion"
        models = await client.models.list()
        assert [m.id for m in models.data] == ["sim-model"]
        await client.close()
        assert sum(e.engine.stats.request_success["length"] + e.engine.stats.request_success["stop"]
                   for e in engines) == 3  # fmt: skip


async def test_error_cases():
    async with fleet_and_gateway(1, gateway={"max_body_bytes": 100_000}) as (gw, _engines):
        url = gw.url + "/v1/chat/completions"
        st, body, _ = await post(url, b"{nope")
        assert st == 400 and body["error"]["type"] == "BadRequestError" and "JSON" in body["error"]["message"]
        st, body, _ = await post(url, {"messages": []})
        assert st == 400 and body["error"]["param"] == "model"
        st, body, _ = await post(url, {"model": "sim-model"})
        assert st == 400 and body["error"]["param"] == "messages"
        st, body, _ = await post(url, {**CHAT, "model": "gpt-99"})
        assert st == 404 and body["error"]["message"] == "The model `gpt-99` does not exist."
        st, body, _ = await post(url, {**CHAT, "messages": [{"role": "user", "content": "x" * 200_000}]})
        assert st == 413 and body["error"]["code"] == 413
        # upstream errors are passed through as they came (retry disabled by a non-retryable status)
        st, body, _ = await post(url, {**CHAT, "max_tokens": 10**7})
        assert st == 400 and "maximum context length" in body["error"]["message"]
        st, body, hdr = await post(url, CHAT, {"x-rastos-fault": "rate_limit"})
        assert st == 429 and body["error"]["type"] == "RateLimitError"  # only one endpoint: nothing to retry on
        # no healthy endpoint: 503 with Retry-After
        gw.data.fleet.healthy[:] = False
        st, body, hdr = await post(url, CHAT)
        assert st == 503 and hdr["Retry-After"] == "1" and body["error"]["code"] == 503
        assert hdr["x-llm-d-request-dropped-reason"] == "rejected-no-endpoints"
        async with aiohttp.ClientSession() as s, s.get(gw.url + "/ready") as r:
            assert r.status == 503
        async with aiohttp.ClientSession() as s, s.get(gw.url + "/nope") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == 404


async def test_retryable_status_moves_to_the_next_endpoint():
    async with fleet_and_gateway(2, gateway={"debug_headers": True}) as (gw, engines):
        st, _body, _hdr = await post(gw.url + "/v1/chat/completions", CHAT, {"x-rastos-fault": "server_error"})
        # the fault header is forwarded, so both engines fail: the last answer is passed through
        assert st == 500 and gw.stats.retries == 1
        engines[0].faults.update({"error_rate": 1.0, "error_kinds": ["server_error"]})
        engines[1].faults.update({"error_rate": 0.0})
        for _ in range(4):
            st, _body, hdr = await post(gw.url + "/v1/chat/completions", CHAT)
            assert st == 200 and hdr["x-rastos-endpoint"] == f"127.0.0.1:{engines[1].opts.port}"


async def test_retry_before_first_byte_when_an_engine_is_killed():
    port = free_port()
    # This engine dies (exit 1) on the first request it receives, before answering it.
    proc = subprocess.Popen([sys.executable, "-m", "rastos.cli", "sim-engine", "--port", str(port), "--model",
                             "sim-model", "--time-scale", "0.02", "--crash-after", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        assert "serving" in proc.stdout.readline()
        policy = {"plugins": [{"type": "round-robin-picker"}],
                  "schedulingProfiles": [{"name": "p", "plugins": [{"pluginRef": "round-robin-picker"}]}]}  # fmt: skip
        async with fleet_and_gateway(1, scheduler=policy, gateway={"debug_headers": True}) as (gw, engines):
            from rastos.gateway.config import EndpointSpec

            doomed = gw.data.add(EndpointSpec(url=f"http://127.0.0.1:{port}", models=["sim-model"])).index
            gw.data.failures.append(0)
            gw.stats.per_endpoint.append(0)
            picker = gw.scheduler.profiles["p"].picker
            survivor = f"127.0.0.1:{engines[0].opts.port}"

            picker.counter = doomed  # killed while holding the request: connection reset
            st, _body, hdr = await post(gw.url + "/v1/chat/completions", CHAT)
            assert st == 200 and hdr["x-rastos-endpoint"] == survivor
            assert proc.wait(10) == 1

            picker.counter = doomed  # now dead: connection refused; streamed this time
            async with aiohttp.ClientSession() as s:
                async with s.post(gw.url + "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
                    assert r.status == 200 and r.headers["x-rastos-endpoint"] == survivor
                    data = await r.read()
            assert data.rstrip().endswith(b"data: [DONE]")
            assert gw.stats.retries == 2
            assert gw.data.failures[doomed] == 2
    finally:
        proc.kill()


async def test_client_disconnect_cancels_the_upstream_request():
    async with fleet_and_gateway(1, engine={"time_scale": 0.2}) as (gw, engines):
        body = {"model": "sim-model", "prompt": "x", "max_tokens": 4000, "stream": True, "ignore_eos": True}
        async with aiohttp.ClientSession() as s, s.post(gw.url + "/v1/completions", json=body) as r:
            async for line in r.content:
                if line.startswith(b"data: {"):
                    break
            (job,) = engines[0]._jobs
        assert await asyncio.wait_for(job.done, 10) == "client disconnected"
        assert engines[0].engine.stats.request_success["abort"] == 1


async def test_session_header_and_prefix_keep_a_conversation_on_one_engine():
    async with fleet_and_gateway(4, gateway={"debug_headers": True}) as (gw, _engines):
        seen = set()
        system = "You are a careful assistant. " * 80
        msgs = [{"role": "system", "content": system}]
        for turn in range(4):
            msgs.append({"role": "user", "content": f"question {turn}"})
            st, body, hdr = await post(gw.url + "/v1/chat/completions",
                                       {"model": "sim-model", "messages": msgs, "max_tokens": 10},
                                       {"x-session-id": "conv-1"})  # fmt: skip
            assert st == 200
            seen.add(hdr["x-rastos-endpoint"])
            msgs.append({"role": "assistant", "content": body["choices"][0]["message"]["content"]})
            if turn:
                assert body["usage"]["prompt_tokens_details"]["cached_tokens"] > 400
        assert len(seen) == 1
        assert "x-rastos-scores" in hdr


async def test_scraping_health_ejection_and_return():
    async with fleet_and_gateway(2, gateway={"eject_after_failures": 2}) as (gw, engines):
        f = gw.data.fleet
        assert (f.block_size == 16).all() and (f.num_gpu_blocks == 28125).all()
        assert (f.scraped_at > 0).all()
        engines[1].faults.update({"unready": True})
        for _ in range(2):
            await gw.data.probe(1)
        assert not f.healthy[1]
        st, _, _ = await post(gw.url + "/v1/chat/completions", CHAT)
        assert st == 200 and gw.stats.per_endpoint[1] == 0  # ejected: no traffic
        engines[1].faults.update({"unready": False})
        assert await gw.data.probe(1) and f.healthy[1]


async def test_gateway_metrics_parse_with_llm_d_names():
    async with fleet_and_gateway(2) as (gw, _engines):
        client = sdk(gw)
        for _ in range(3):
            await client.chat.completions.create(model="sim-model", messages=[{"role": "user", "content": "hi " * 300}],
                                                 max_tokens=3, stream=True)  # fmt: skip
            await post(gw.url + "/v1/chat/completions", {**CHAT, "model": "nope"})
        await client.close()
        async with aiohttp.ClientSession() as s, s.get(gw.url + "/metrics") as r:
            fams = {f.name: f for f in text_string_to_metric_families(await r.text())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples}
    assert samples[("llm_d_epp_request_total", (("model_name", "sim-model"), ("target_model_name", "sim-model")))] == 3
    errs = [
        v for (n, lab), v in samples.items() if n == "llm_d_epp_request_error_total" and ("error_code", "404") in lab
    ]
    assert errs == [3]
    assert samples[("llm_d_epp_request_ttft_seconds_count", (("streaming", "true"),))] == 3
    assert samples[("llm_d_epp_scheduler_e2e_duration_seconds_count", ())] == 3
    assert samples[("llm_d_epp_ready_endpoints", ())] == 2
    assert samples[("llm_d_epp_prefix_indexer_size", ())] > 0
    assert any(n == "llm_d_epp_plugin_duration_seconds_count" for n, _ in samples)
    assert {"rastos_endpoint_healthy", "llm_d_epp_request_running"} <= set(fams)


def test_config_errors_name_the_field(tmp_path):
    f = tmp_path / "gw.yaml"
    f.write_text("gateway: {port: 99999}\nendpoints: [{url: 'ftp://x'}]\n")
    with pytest.raises(ConfigError) as e:
        load_gateway_config(f)
    assert "gateway.port" in str(e.value) and "endpoints[0].url" in str(e.value)
    f.write_text("endpoints: []\n")
    with pytest.raises(ConfigError, match="endpoints: List should have at least 1 item"):
        load_gateway_config(f)
