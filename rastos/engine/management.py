"""The sim engine's routes besides generation: models, health, metrics, tokenizer, LoRA
loading (vLLM's endpoints), and the simulator's own ``/admin`` routes (faults, stats).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson
from aiohttp import web
from pydantic import ValidationError

from rastos.engine.chat import ChatTemplateError
from rastos.engine.http_util import json_response, parse_body
from rastos.engine.metrics import CONTENT_TYPE_LATEST
from rastos.engine.protocol import APIError, DetokenizeRequest, TokenizeRequest, validation_message

if TYPE_CHECKING:
    from rastos.engine.server import SimEngineServer

__all__ = ["VLLM_VERSION", "ManagementAPI"]

VLLM_VERSION = "0.33.0"


class ManagementAPI:
    """Handlers bound to one :class:`SimEngineServer`."""

    def __init__(self, server: SimEngineServer) -> None:
        self.s = server

    def register(self, r: web.UrlDispatcher) -> None:
        r.add_get("/v1/models", self.models)
        r.add_get("/health", self.health)
        r.add_get("/ping", self.health)
        r.add_get("/version", self.version)
        r.add_get("/metrics", self.metrics_handler)
        r.add_post("/tokenize", self.tokenize)
        r.add_post("/detokenize", self.detokenize)
        r.add_post("/reset_prefix_cache", self.reset_prefix_cache)
        r.add_post("/v1/load_lora_adapter", self.load_lora)
        r.add_post("/v1/unload_lora_adapter", self.unload_lora)
        r.add_get("/admin/faults", self.get_faults)
        r.add_post("/admin/faults", self.set_faults)
        r.add_get("/admin/stats", self.stats)
        r.add_post("/admin/stats/reset", self.reset_stats)

    async def models(self, request: web.Request) -> web.Response:
        created = int(self.s.started_at)
        mml = self.s.profile.max_model_len
        base = self.s.opts.model_name
        data = [
            {
                "id": base,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": self.s.opts.model,
                "parent": None,
                "max_model_len": mml,
                "permission": [],
            }
        ]
        for name, path in self.s.lora_modules.items():
            data.append(
                {
                    "id": name,
                    "object": "model",
                    "created": created,
                    "owned_by": "vllm",
                    "root": path,
                    "parent": base,
                    "max_model_len": None,
                    "permission": [],
                }
            )
        return json_response({"object": "list", "data": data})

    async def health(self, request: web.Request) -> web.Response:
        if self.s.faults.config.unready:
            return web.Response(status=503)
        return web.Response(status=200)

    async def version(self, request: web.Request) -> web.Response:
        return json_response({"version": VLLM_VERSION})

    async def metrics_handler(self, request: web.Request) -> web.Response:
        resp = web.Response(body=self.s.metrics.render())
        resp.headers["content-type"] = CONTENT_TYPE_LATEST
        return resp

    async def tokenize(self, request: web.Request) -> web.Response:
        body: TokenizeRequest = parse_body(TokenizeRequest, await request.read())
        if body.model is not None:
            self.s.check_model(body.model)
        if body.messages is not None:
            try:
                text = self.s.template.render([m.model_dump() for m in body.messages], body.add_generation_prompt)
            except ChatTemplateError as exc:
                raise APIError(400, str(exc), "messages") from None
            ids = self.s.tokenizer.encode(text)
        elif body.prompt is not None:
            ids = self.s.tokenizer.encode(body.prompt, add_bos=body.add_special_tokens)
        else:
            raise APIError(400, "Either prompt or messages must be given.", "prompt")
        return json_response(
            {"count": len(ids), "max_model_len": self.s.profile.max_model_len, "tokens": ids, "token_strs": None}
        )

    async def detokenize(self, request: web.Request) -> web.Response:
        body: DetokenizeRequest = parse_body(DetokenizeRequest, await request.read())
        return json_response({"prompt": self.s.tokenizer.decode(body.tokens)})

    async def reset_prefix_cache(self, request: web.Request) -> web.Response:
        if not self.s.engine.reset_prefix_cache():
            raise APIError(409, "Cannot reset the prefix cache while requests are running.")
        if self.s.publisher is not None:
            self.s.publisher.publish(self.s.engine.take_kv_events(), time.time())
        return web.Response(status=200)

    async def load_lora(self, request: web.Request) -> web.Response:
        data = orjson.loads(await request.read() or b"{}")
        name, path = data.get("lora_name"), data.get("lora_path")
        if not isinstance(name, str) or not name or not isinstance(path, str):
            raise APIError(400, "lora_name and lora_path are required.", "lora_name")
        if name in self.s.lora_modules:
            raise APIError(400, f"The lora adapter '{name}' has already been loaded.", "lora_name")
        self.s.lora_modules[name] = path
        self.s.metrics.lora_enabled = True
        return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")

    async def unload_lora(self, request: web.Request) -> web.Response:
        data = orjson.loads(await request.read() or b"{}")
        name = data.get("lora_name")
        if name not in self.s.lora_modules:
            raise APIError(404, f"The lora adapter '{name}' cannot be found.", "lora_name", "NotFoundError")
        del self.s.lora_modules[name]
        self.s.engine.lora_slots.pop(name, None)
        return web.Response(text=f"Success: LoRA adapter '{name}' removed successfully.")

    async def get_faults(self, request: web.Request) -> web.Response:
        return json_response(self.s.faults.config.model_dump())

    async def set_faults(self, request: web.Request) -> web.Response:
        try:
            patch = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError as exc:
            raise APIError(400, f"Request body is not valid JSON: {exc}") from None
        if not isinstance(patch, dict):
            raise APIError(400, "expected a JSON object of fault settings")
        try:
            cfg = self.s.faults.update(patch)
        except ValidationError as exc:
            msg, param = validation_message(exc)
            raise APIError(400, msg, param) from None
        self.s.driver.slowdown = cfg.slowdown
        return json_response(cfg.model_dump())

    async def reset_stats(self, request: web.Request) -> web.Response:
        """Forget recorded step lags (benchmarks measure a window, not the ramp-up)."""
        self.s.driver.lag_samples.clear()
        self.s.driver.busy_wall = 0.0
        return web.Response(status=200)

    async def stats(self, request: web.Request) -> web.Response:
        st = self.s.engine.stats
        return json_response({
            "engine_time_s": self.s.driver.engine_time(),
            "drift_s": self.s.driver.drift_s,
            "steps": self.s.driver.steps,
            "step_lag": self.s.driver.lag_percentiles(),
            "busy_wall_s": self.s.driver.busy_wall,
            "running": self.s.engine.num_running,
            "waiting": self.s.engine.num_waiting,
            "kv_cache_usage": self.s.engine.kv.usage,
            "prefix_cache_hit_rate": st.prefix_hit_rate,
            "preemptions": st.num_preemptions,
            "requests": st.request_success,
            "generation_tokens": st.generation_tokens,
            "requests_seen": self.s.faults.requests_seen,
        })  # fmt: skip
