"""``rastos sim-engine``: an HTTP server that answers like vLLM, backed by the engine model.

Generation routes live here: ``POST /v1/chat/completions`` and ``/v1/completions`` (JSON or
SSE); the rest (models, health, metrics, tokenizer, LoRA, ``/admin``) is in
:mod:`rastos.engine.management`. Request handling is: validate,
render and tokenise, check lengths, apply faults, then hand the engine requests to the
driver; results leave through :mod:`rastos.engine.jobs`. Every failure is an OpenAI-style
JSON error; an unexpected exception is a 500, never a dead server.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from rastos.engine.chat import ChatTemplate, ChatTemplateError
from rastos.engine.core import EngineCore, StepOutput, StepPlan
from rastos.engine.driver import RealtimeDriver
from rastos.engine.faults import FAULT_HEADER, FaultInjector
from rastos.engine.http_util import json_response, parse_body
from rastos.engine.jobs import Job
from rastos.engine.kv_cache import KVEvent
from rastos.engine.kv_events import KVEventPublisher
from rastos.engine.management import ManagementAPI
from rastos.engine.metrics import EngineMetrics
from rastos.engine.options import SimEngineOptions
from rastos.engine.protocol import APIError, ChatCompletionRequest, CompletionRequest
from rastos.engine.request import EngineRequest
from rastos.engine.textgen import TextSource, sample_eos_at
from rastos.engine.tokenizer import load_tokenizer

__all__ = ["SimEngineServer"]

log = logging.getLogger(__name__)


class SimEngineServer:
    """One simulated model server (engine model + driver + HTTP API)."""

    def __init__(self, opts: SimEngineOptions) -> None:
        self.opts = opts
        self.engine = EngineCore(opts.engine_config())
        self.profile = self.engine.profile
        self.tokenizer = load_tokenizer(opts.tokenizer)
        template = Path(opts.chat_template).read_text() if opts.chat_template else None
        self.template = (
            ChatTemplate(template, self.tokenizer.bos_token)
            if template
            else ChatTemplate(bos_token=self.tokenizer.bos_token)
        )
        self.lora_modules = dict(opts.lora_modules)
        self.metrics = EngineMetrics(
            self.engine,
            opts.model_name,
            opts.engine_type,
            lora_enabled=bool(self.lora_modules),
            legacy=opts.legacy_metrics,
        )
        self.faults = FaultInjector(opts.faults, seed=opts.seed)
        self.driver = RealtimeDriver(self.engine, time_scale=opts.time_scale, on_step=self._on_step)
        self.driver.slowdown = opts.faults.slowdown
        self.publisher: KVEventPublisher | None = None
        self._rng = random.Random(opts.seed)
        self._counter = itertools.count()
        self._jobs: set[Job] = set()
        self._runner: web.AppRunner | None = None
        self.started_at = time.time()
        self.app = self._build_app()

    # ------------------------------------------------------------------ lifecycle
    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024, middlewares=[self._errors])
        app.on_response_prepare.append(self._server_header)
        r = app.router
        r.add_post("/v1/chat/completions", self.chat_completions)
        r.add_post("/v1/completions", self.completions)
        ManagementAPI(self).register(r)
        return app

    async def start(self) -> None:
        """Open the port (after the configured slow-start delay) and start publishers."""
        if self.opts.startup_delay > 0:
            await asyncio.sleep(self.opts.startup_delay)
        self._runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.opts.host, self.opts.port, reuse_address=True)
        await site.start()
        if self.opts.port == 0:  # report the port the OS chose (the KV topic names it)
            sock = site._server.sockets[0]  # type: ignore[union-attr]
            self.opts.port = sock.getsockname()[1]
        if self.opts.kv_events:
            self.publisher = KVEventPublisher(
                self.opts.kv_events,
                self.opts.kv_topic(),
                replay_endpoint=self.opts.kv_events_replay,
                map_format=self.opts.kv_events_map_format,
                bind=self.opts.kv_events_bind,
            )
            await self.publisher.start()

    async def stop(self) -> None:
        for job in list(self._jobs):
            job.cancel("shutdown")
        self.driver.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.publisher is not None:
            await self.publisher.close()

    # ------------------------------------------------------------------ plumbing
    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except APIError as exc:
            return json_response(exc.body(), exc.status)
        except web.HTTPException as exc:
            if exc.status >= 400:
                return json_response({"detail": exc.reason}, exc.status)
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:  # never let one request take the server down
            log.exception("unhandled error on %s", request.path)
            return json_response(APIError(500, f"Internal server error: {type(exc).__name__}: {exc}").body(), 500)

    @staticmethod
    async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["server"] = "uvicorn"

    def _on_step(self, plan: StepPlan, out: StepOutput, events: list[KVEvent]) -> None:
        for req in out.new_token_reqs:
            ch = req.user_data
            if ch is not None:
                ch.job.deliver(ch)
        if events and self.publisher is not None:
            self.publisher.publish(events, time.time())

    def check_model(self, name: str) -> str | None:
        """The LoRA adapter a model name selects (None for the base model); 404 if unknown."""
        if name == self.opts.model_name or name == self.opts.model:
            return None
        if name in self.lora_modules:
            return name
        raise APIError(404, f"The model `{name}` does not exist.", "model", "NotFoundError")

    # ------------------------------------------------------------------ generation
    def _max_tokens(self, prompt_len: int, requested: int | None) -> int:
        mml = self.profile.max_model_len
        if prompt_len >= mml:
            raise APIError(
                400,
                f"This model's maximum context length is {mml} tokens. However, your request has "
                f"{prompt_len} input tokens. Please reduce the length of the input messages.",
                "input_tokens",
            )
        if requested is None:
            return mml - prompt_len
        if requested > mml - prompt_len:
            raise APIError(
                400,
                f"'max_tokens' or 'max_completion_tokens' is too large: {requested}. This model's maximum "
                f"context length is {mml} tokens and your request has {prompt_len} input tokens "
                f"({requested} > {mml} - {prompt_len}).",
                "max_tokens",
            )
        return requested

    def _fault_error(self, kind: str, prompt_len: int) -> APIError | None:
        if kind == "server_error":
            return APIError(500, "Internal server error", None, "InternalServerError")
        if kind == "rate_limit":
            return APIError(429, "Too many requests: the server is at capacity, retry later.", None, "RateLimitError")
        if kind == "context_length":
            mml = self.profile.max_model_len
            return APIError(
                400,
                f"This model's maximum context length is {mml} tokens. However, your request has "
                f"{max(prompt_len, mml)} input tokens. Please reduce the length of the input messages.",
                "input_tokens",
            )
        return None

    async def _generate(
        self,
        request: web.Request,
        kind: str,
        body: ChatCompletionRequest | CompletionRequest,
        prompts: list[list[int]],
        max_tokens_req: int | None,
        lora: str | None,
        prompt_texts: list[str] | None = None,
    ) -> web.StreamResponse:
        if body.priority != 0 and self.opts.policy != "priority":
            raise APIError(
                400, "Priority scheduling is not enabled (start with --scheduling-policy priority).", "priority"
            )
        limits = [self._max_tokens(len(p), max_tokens_req) for p in prompts]
        fault = self.faults.decide(request.headers.get(FAULT_HEADER))
        if fault == "crash":
            log.error("injected crash")
            os._exit(1)
        if fault is not None and (err := self._fault_error(fault, max(len(p) for p in prompts))) is not None:
            raise err
        if fault == "hang":
            await asyncio.Event().wait()  # until the client goes away
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        resp_id = ("chatcmpl-" if kind == "chat" else "cmpl-") + rid
        created = int(time.time())
        stream = body.stream
        job = Job(
            kind,  # type: ignore[arg-type]
            resp_id,
            created,
            body.model,
            stream=stream,
            include_usage=bool(body.stream_options and body.stream_options.include_usage),
            abort=self.driver.abort,
            disconnect_after=self.faults.config.disconnect_after_tokens if fault == "disconnect" else None,
        )
        base_seed = body.seed if body.seed is not None else self._rng.getrandbits(63)
        reqs = []
        for pi, prompt in enumerate(prompts):
            for k in range(body.n):
                seed = base_seed + pi * 1000 + k
                rng = random.Random(seed)
                eos_at = (
                    None
                    if body.ignore_eos
                    else sample_eos_at(
                        rng, body.min_tokens, limits[pi], self.opts.output_len_median, self.opts.output_len_sigma
                    )
                )
                src = TextSource(self.tokenizer, seed, eos_at)
                req = EngineRequest(
                    f"{rid}-{pi}-{k}" if len(prompts) * body.n > 1 else rid,
                    prompt,
                    limits[pi],
                    eos_at=eos_at,
                    priority=body.priority,
                    lora_name=lora,
                    cache_salt=body.cache_salt,
                    next_token=src,
                )
                job.add(req, src, pi)
                reqs.append(req)
        headers = {"x-request-id": rid}
        resp: web.StreamResponse | None = None
        if stream:
            resp = web.StreamResponse(
                headers={"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", **headers}
            )
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            assert request.transport is not None
            job.start_stream(request.transport)
        self._jobs.add(job)
        try:
            for req in reqs:
                self.driver.submit(req)
            outcome = await asyncio.shield(job.done)
        except asyncio.CancelledError:
            job.cancel("client disconnected")
            raise
        finally:
            self._jobs.discard(job)
        if stream:
            assert resp is not None
            if outcome == "ok":
                try:
                    await resp.write_eof()
                except ConnectionResetError:  # the client left after the last chunk: nothing to tell it
                    log.debug("client went away before the end of stream %s", rid)
            return resp
        if outcome != "ok":
            raise APIError(500, f"request aborted: {outcome}")
        return json_response(job.response_body(prompt_texts if getattr(body, "echo", False) else None), headers=headers)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        body: ChatCompletionRequest = parse_body(ChatCompletionRequest, await request.read())
        lora = self.check_model(body.model)
        try:
            text = self.template.render(
                [m.model_dump() for m in body.messages],
                add_generation_prompt=body.add_generation_prompt,
                **(body.chat_template_kwargs or {}),
            )
        except ChatTemplateError as exc:
            raise APIError(400, str(exc), "messages") from None
        ids = self.tokenizer.encode(text)
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        return await self._generate(request, "chat", body, [ids], max_tokens, lora)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body: CompletionRequest = parse_body(CompletionRequest, await request.read())
        lora = self.check_model(body.model)
        p = body.prompt
        texts: list[str] | None = None
        if isinstance(p, str):
            texts = [p]
            prompts = [self.tokenizer.encode(p, add_bos=True)]
        elif p and isinstance(p[0], str):
            texts = list(p)  # type: ignore[arg-type]
            prompts = [self.tokenizer.encode(s, add_bos=True) for s in p]  # type: ignore[arg-type]
        elif p and isinstance(p[0], list):
            prompts = [list(x) for x in p]  # type: ignore[union-attr]
        else:
            prompts = [list(p)]  # type: ignore[arg-type]
        if not prompts or any(len(x) == 0 for x in prompts):
            raise APIError(400, "prompt must not be empty", "prompt")
        vocab = self.tokenizer.vocab_size
        if any(t < 0 or t >= vocab for x in prompts for t in x):
            raise APIError(400, f"Token id out of vocabulary range [0, {vocab}).", "prompt")
        if texts is None and body.echo:
            texts = [self.tokenizer.decode(x) for x in prompts]
        return await self._generate(request, "completion", body, prompts, body.max_tokens, lora, texts)
