"""The sim engine over real HTTP: the openai SDK, vLLM's error JSON, /metrics, tokenize."""

import asyncio

import aiohttp
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import base_url, running_server


def sdk(server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url(server) + "/v1", api_key="none", max_retries=0)


async def test_openai_sdk_chat_non_streaming_and_streaming():
    async with running_server() as srv:
        client = sdk(srv)
        msgs = [{"role": "user", "content": "Write two sentences about routers."}]
        r = await client.chat.completions.create(model="sim-model", messages=msgs, max_tokens=24, seed=7)
        assert r.object == "chat.completion" and r.model == "sim-model"
        assert r.choices[0].message.role == "assistant" and r.choices[0].message.content
        assert r.usage.completion_tokens <= 24 and r.usage.prompt_tokens > 5
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
        assert r.choices[0].finish_reason in ("stop", "length")

        stream = await client.chat.completions.create(
            model="sim-model", messages=msgs, max_tokens=24, seed=7, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        text, finish, usage, roles = [], None, None, 0
        async for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for c in chunk.choices:
                roles += c.delta.role == "assistant"
                text.append(c.delta.content or "")
                finish = c.finish_reason or finish
        assert roles == 1
        assert "".join(text) == r.choices[0].message.content  # same seed, same answer
        assert finish == r.choices[0].finish_reason
        assert usage.completion_tokens == r.usage.completion_tokens
        assert usage.prompt_tokens_details.cached_tokens > 0  # the same prompt was just served
        await client.close()


async def test_openai_sdk_completions_batch_and_n():
    async with running_server() as srv:
        client = sdk(srv)
        r = await client.completions.create(
            model="sim-model", prompt=["first prompt here", "second"], max_tokens=10, n=2,
            extra_body={"ignore_eos": True},
        )  # fmt: skip
        assert r.object == "text_completion"
        assert sorted(c.index for c in r.choices) == [0, 1, 2, 3]
        assert all(c.finish_reason == "length" for c in r.choices)
        assert r.usage.completion_tokens == 40
        ids = await client.completions.create(
            model="sim-model",
            prompt=[128000, 400, 500, 600],
            max_tokens=3,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        chunks = [c async for c in ids]
        assert chunks[-1].choices[0].finish_reason == "length"
        await client.close()


async def test_ignore_eos_min_tokens_and_max_tokens():
    async with running_server(output_len_median=3) as srv:
        client = sdk(srv)
        msgs = [{"role": "user", "content": "hi"}]
        forced = await client.chat.completions.create(
            model="sim-model", messages=msgs, max_tokens=60, extra_body={"ignore_eos": True}
        )
        assert forced.usage.completion_tokens == 60 and forced.choices[0].finish_reason == "length"
        floor = await client.chat.completions.create(
            model="sim-model", messages=msgs, max_tokens=60, extra_body={"min_tokens": 30}
        )
        assert floor.usage.completion_tokens >= 30
        short = await client.chat.completions.create(model="sim-model", messages=msgs, max_tokens=60)
        assert short.choices[0].finish_reason == "stop" and short.usage.completion_tokens < 60
        await client.close()


async def _post(url: str, data: bytes | str, status: int) -> dict:
    async with aiohttp.ClientSession() as s, s.post(url, data=data) as r:
        assert r.status == status, await r.text()
        assert r.content_type == "application/json"
        return await r.json()


async def test_error_responses_are_vllm_shaped():
    async with running_server(max_model_len=2048, num_gpu_blocks=300) as srv:
        url = base_url(srv) + "/v1/chat/completions"
        e = await _post(url, b"{not json", 400)
        assert e["error"]["type"] == "BadRequestError" and e["error"]["code"] == 400
        e = await _post(url, b"", 400)
        assert "empty" in e["error"]["message"]
        e = await _post(url, '{"model": "sim-model"}', 400)
        assert "messages" in e["error"]["message"] and e["error"]["param"] == "messages"
        e = await _post(
            url, '{"model": "sim-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": -3}', 400
        )
        assert "max_tokens" in e["error"]["message"]
        e = await _post(url, '{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}', 404)
        assert e["error"]["message"] == "The model `gpt-9` does not exist." and e["error"]["type"] == "NotFoundError"
        long = "word " * 3000
        e = await _post(url, f'{{"model": "sim-model", "messages": [{{"role": "user", "content": "{long}"}}]}}', 400)
        msg = e["error"]["message"]
        assert "maximum context length is 2048 tokens" in msg and "input tokens" in msg
        n_prompt = int(msg.split("your request has ")[1].split()[0])
        assert n_prompt > 2048
        e = await _post(
            url, '{"model": "sim-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5000}', 400
        )
        assert "5000" in e["error"]["message"] and "2048" in e["error"]["message"]
        e = await _post(
            url, '{"model": "sim-model", "messages": [{"role": "user", "content": "x"}], "priority": 3}', 400
        )
        assert "priority" in e["error"]["message"].lower()
        e = await _post(base_url(srv) + "/v1/completions", '{"model": "sim-model", "prompt": [1, 999999999]}', 400)
        assert "vocabulary" in e["error"]["message"]
        e = await _post(base_url(srv) + "/v1/completions", '{"model": "sim-model", "prompt": []}', 400)
        async with aiohttp.ClientSession() as s, s.get(base_url(srv) + "/v1/nothing") as r:
            assert r.status == 404 and (await r.json())["detail"] == "Not Found"
        # the server is still fine after all that
        assert srv.engine.num_running == 0
        async with aiohttp.ClientSession() as s, s.get(base_url(srv) + "/health") as r:
            assert r.status == 200


async def test_openai_sdk_raises_typed_errors():
    async with running_server() as srv:
        client = sdk(srv)
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.BadRequestError, match="context length"):
            await client.completions.create(model="sim-model", prompt="x", max_tokens=10**6)
        await client.close()


async def test_models_tokenize_detokenize_version():
    async with running_server(lora_modules={"sql-lora": "/adapters/sql"}, max_loras=2) as srv:
        async with aiohttp.ClientSession() as s:
            async with s.get(base_url(srv) + "/v1/models") as r:
                models = (await r.json())["data"]
            assert [m["id"] for m in models] == ["sim-model", "sql-lora"]
            assert models[0]["max_model_len"] == 131072 and models[1]["parent"] == "sim-model"
            async with s.post(base_url(srv) + "/tokenize", json={"model": "sim-model", "prompt": "Hello world"}) as r:
                tok = await r.json()
            assert tok["count"] == len(tok["tokens"]) and tok["tokens"][0] == 128000
            async with s.post(
                base_url(srv) + "/tokenize", json={"messages": [{"role": "user", "content": "Hello world"}]}
            ) as r:
                chat_tok = await r.json()
            assert chat_tok["tokens"][-2:] == [128007, 271] or chat_tok["tokens"][-1] != 128009
            async with s.post(base_url(srv) + "/detokenize", json={"tokens": tok["tokens"][1:]}) as r:
                assert (await r.json())["prompt"] == "Hello world"
            async with s.get(base_url(srv) + "/version") as r:
                assert "version" in await r.json()
        client = sdk(srv)
        r = await client.chat.completions.create(
            model="sql-lora", messages=[{"role": "user", "content": "x"}], max_tokens=3
        )
        assert r.model == "sql-lora"
        await client.close()


def _families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


async def test_metrics_parse_with_vllm_names_and_labels():
    async with running_server(lora_modules={"ad": "/a"}) as srv:
        client = sdk(srv)
        prompt = "shared system prompt " * 60
        for _ in range(3):
            await client.completions.create(
                model="sim-model", prompt=prompt, max_tokens=8, extra_body={"ignore_eos": True}
            )
        await client.close()
        async with aiohttp.ClientSession() as s, s.get(base_url(srv) + "/metrics") as r:
            assert r.headers["content-type"].startswith("text/plain")
            fams = _families(await r.text())
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:cache_config_info", "vllm:lora_requests_info", "vllm:prefix_cache_queries",
                 "vllm:prefix_cache_hits", "vllm:prompt_tokens", "vllm:generation_tokens",
                 "vllm:num_preemptions", "vllm:request_success", "vllm:time_to_first_token_seconds",
                 "vllm:inter_token_latency_seconds", "vllm:e2e_request_latency_seconds",
                 "vllm:request_queue_time_seconds"):  # fmt: skip
        assert name in fams, name
    samples = {s.name: s for f in fams.values() for s in f.samples}
    run = samples["vllm:num_requests_running"]
    assert run.labels == {"model_name": "sim-model", "engine": "0"} and run.value == 0
    assert samples["vllm:kv_cache_usage_perc"].value == 0.0
    cfg = samples["vllm:cache_config_info"].labels
    assert cfg["block_size"] == "16" and cfg["num_gpu_blocks"] == "28125"
    q, h = samples["vllm:prefix_cache_queries_total"].value, samples["vllm:prefix_cache_hits_total"].value
    assert 0 < h < q
    assert samples["vllm:generation_tokens_total"].value == 24
    ok = [s for s in fams["vllm:request_success"].samples if s.labels.get("finished_reason") == "length"]
    assert ok[0].value == 3
    assert samples["vllm:time_to_first_token_seconds_count"].value == 3
    buckets = [s.labels["le"] for s in fams["vllm:time_to_first_token_seconds"].samples if s.name.endswith("_bucket")]
    assert buckets[:3] == ["0.001", "0.005", "0.01"] and buckets[-1] == "+Inf"
    lora = samples["vllm:lora_requests_info"]
    assert set(lora.labels) == {"max_lora", "waiting_lora_adapters", "running_lora_adapters"}
    assert lora.value > 1.7e9  # a Unix timestamp


async def test_sglang_metric_names():
    async with running_server(engine_type="sglang") as srv:
        async with aiohttp.ClientSession() as s, s.get(base_url(srv) + "/metrics") as r:
            fams = _families(await r.text())
    assert {"sglang:num_queue_reqs", "sglang:num_running_reqs", "sglang:token_usage",
            "sglang:cache_config_info"} <= set(fams)  # fmt: skip
    cfg = fams["sglang:cache_config_info"].samples[0].labels
    assert cfg["page_size"] == "16" and cfg["num_pages"] == "28125"
    assert not any(n.startswith("vllm:") for n in fams)


async def test_multi_turn_chat_reuses_the_previous_answer():
    async with running_server() as srv:
        client = sdk(srv)
        msgs = [{"role": "system", "content": "You are a helpful assistant. " * 20},
                {"role": "user", "content": "Explain prefix caching."}]  # fmt: skip
        r1 = await client.chat.completions.create(model="sim-model", messages=msgs, max_tokens=80, seed=1)
        msgs += [{"role": "assistant", "content": r1.choices[0].message.content},
                 {"role": "user", "content": "Shorter please."}]  # fmt: skip
        r2 = await client.chat.completions.create(model="sim-model", messages=msgs, max_tokens=5)
        computed_turn1 = r1.usage.prompt_tokens + r1.usage.completion_tokens - 1
        assert r2.usage.prompt_tokens_details.cached_tokens == computed_turn1 // 16 * 16
        await client.close()


async def test_client_disconnect_aborts_the_engine_request():
    async with running_server(time_scale=0.2) as srv:
        body = {"model": "sim-model", "prompt": "hello", "max_tokens": 5000, "stream": True, "ignore_eos": True}
        async with aiohttp.ClientSession() as s:
            async with s.post(base_url(srv) + "/v1/completions", json=body) as r:
                async for line in r.content:
                    if line.startswith(b"data: {"):
                        break  # first token seen; leave
                (job,) = srv._jobs
        assert await asyncio.wait_for(job.done, 10) == "client disconnected"
        assert srv.engine.stats.request_success["abort"] == 1
        assert srv.engine.num_running == 0 and srv.engine.kv.usage == 0.0


async def test_time_scale_reports_simulated_latencies():
    async with running_server(time_scale=0.01) as srv:
        client = sdk(srv)
        r = await client.completions.create(model="sim-model", prompt="hello", max_tokens=100,
                                            extra_body={"ignore_eos": True})  # fmt: skip
        assert r.usage.completion_tokens == 100
        await client.close()
    e2e = srv.engine.stats.e2e
    # 100 decode steps of ~7.8 ms at batch 1 in simulated time, however fast the wall clock ran
    assert e2e.count == 1 and 0.7 <= e2e.sum <= 0.95, e2e.sum


async def test_client_gone_at_end_of_stream_is_not_an_error(monkeypatch, caplog):
    """A client that closes right after ``[DONE]`` makes the final chunk write fail; that is an
    ordinary disconnect, not an unhandled server error."""
    from aiohttp import ClientConnectionResetError, web

    async def gone(self):
        raise ClientConnectionResetError("Cannot write to closing transport")

    monkeypatch.setattr(web.StreamResponse, "write_eof", gone)
    async with running_server(time_scale=0.01) as srv:
        body = {"model": "sim-model", "prompt": "hello", "max_tokens": 3, "stream": True, "ignore_eos": True}
        async with aiohttp.ClientSession() as s:
            async with s.post(base_url(srv) + "/v1/completions", json=body) as r:
                assert r.status == 200
                async for line in r.content:  # the chunked body never ends: write_eof "failed"
                    if line.startswith(b"data: [DONE]"):
                        break
                else:
                    raise AssertionError("no [DONE]")
        assert srv.engine.stats.request_success["length"] == 1
    assert not [rec for rec in caplog.records if rec.levelname == "ERROR"]
