"""One inference request through the gateway: analyse, admit, pick, forward, stream back.

The body is parsed once (orjson) and forwarded as the same bytes. In-flight accounting
(requests and uncached prompt tokens per endpoint) starts when a request is sent: the tokens
are released at the first streamed byte (prefill is over), the request at the end. A failure
before the first body byte (refused or reset connection, a retryable status, a stream that
ends empty) moves the request to the next endpoint of the picker's ranking, at most
``max_retries`` times; the client sees nothing of it. After the first byte, bytes are
relayed as they arrive (TCP_NODELAY both ways, no buffering); if the client goes away, the
upstream connection is closed so the engine aborts the request.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from rastos.analysis import AnalysisError
from rastos.engine.protocol import error_body
from rastos.gateway.upstream import Exchange, UpstreamError, UpstreamPool
from rastos.sched.accounting import InflightAccounting
from rastos.sched.framework import SchedulingResult
from rastos.sched.request import SchedRequest
from rastos.sched.scheduler import NoCandidates

if TYPE_CHECKING:
    from rastos.gateway.server import Gateway

__all__ = ["CONTROL_HEADERS", "RETRYABLE_STATUS", "Proxy"]

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
     "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding"}
)  # fmt: skip
# Routing controls are consumed here, not forwarded (as the EPP strips its own headers).
CONTROL_HEADERS = frozenset(
    {"x-rastos-priority", "x-rastos-endpoint-hint", "x-llm-d-slo-ttft-ms", "x-llm-d-slo-tpot-ms", "x-slo-ttft-ms",
     "x-slo-tpot-ms", "x-llm-d-inference-fairness-id", "x-gateway-inference-fairness-id",
     "x-llm-d-inference-objective", "x-gateway-inference-objective"}
)  # fmt: skip
_DROP = _HOP_BY_HOP | CONTROL_HEADERS
_USAGE = re.compile(rb'"completion_tokens":\s*(\d+)')
_HIGH_WATER = 4 * 1024 * 1024
_LOW_WATER = 1024 * 1024
_clock = time.monotonic


def error_response(
    status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(status=status, body=error_body(status, message, param), content_type="application/json",
                        headers=headers)  # fmt: skip


class _Upstream(Exception):
    """An attempt failed before anything reached the client (retry on the next endpoint)."""


class Proxy:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.settings = gw.config.gateway
        self.fleet = gw.data.fleet
        self.pool = UpstreamPool(connect_timeout=self.settings.connect_timeout_ms / 1e3)
        self.accounting = InflightAccounting(self.fleet, gw.scheduler)
        self._live: dict[str, Exchange] = {}
        self._ids = itertools.count()
        self._id_prefix = uuid.uuid4().hex[:12]

    def _forward_headers(self, request: web.Request, rid: str) -> list[tuple[str, str]]:
        out = [(k, v) for k, v in request.headers.items() if (lk := k.lower()) not in _DROP and lk != "x-request-id"]
        out.append(("x-request-id", rid))
        return out

    def _debug_headers(self, result: SchedulingResult, ep: int) -> dict[str, str]:
        if not self.settings.debug_headers:
            return {}
        pr = result.profiles[result.primary]
        names = self.fleet.endpoints
        order = sorted(zip(pr.candidates.tolist(), pr.scores.tolist(), strict=True), key=lambda x: -x[1])[:16]
        return {
            "x-rastos-endpoint": names[ep].name,
            "x-rastos-scores": ",".join(f"{names[i].name}={s:.3f}" for i, s in order),
        }

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self.guarded(request, "chat")

    async def completion(self, request: web.Request) -> web.StreamResponse:
        return await self.guarded(request, "completion")

    async def guarded(self, request: web.Request, kind: str) -> web.StreamResponse:
        """The route handler: one request, and no exception ever escapes as a crash."""
        try:
            return await self.handle(request, kind)
        except web.HTTPRequestEntityTooLarge as exc:
            return error_response(413, f"Request body too large: {exc.text or 'over the limit'}.")
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:
            log.exception("unhandled error on %s", request.path)
            return error_response(500, f"Internal gateway error: {type(exc).__name__}: {exc}")

    async def handle(self, request: web.Request, kind: str) -> web.StreamResponse:
        gw = self.gw
        arrival = _clock()
        rid = request.headers.get("x-request-id") or f"{self._id_prefix}{next(self._ids):x}"
        raw = await request.read()
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            gw.stats.errors[("", "", "400")] += 1
            return error_response(400, f"Request body is not valid JSON: {exc}")
        try:
            req = gw.analyzer.analyze(kind, body, request.headers, rid, arrival)
        except AnalysisError as exc:
            gw.stats.errors[("", "", "400")] += 1
            return error_response(400, str(exc), exc.param)
        key = (req.model, req.model)
        gw.stats.requests[key] += 1
        if req.model not in self.fleet.known_models():
            gw.stats.errors[(*key, "404")] += 1
            return error_response(404, f"The model `{req.model}` does not exist.", "model")
        rej = gw.scheduler.admit(req, self.fleet, arrival)
        if rej is not None:
            gw.stats.errors[(*key, str(rej.status))] += 1
            hdrs = {"x-llm-d-request-dropped-reason": rej.reason}
            if rej.retry_after is not None:
                hdrs["retry-after"] = str(max(1, int(rej.retry_after + 0.999)))
            return error_response(rej.status, rej.message, None, hdrs)
        try:
            result = gw.scheduler.schedule(req, self.fleet, arrival)
        except NoCandidates as exc:
            gw.stats.errors[(*key, "503")] += 1
            return error_response(
                503, f"No healthy endpoint can serve model `{req.model}` right now ({exc}).", None,
                {"retry-after": "1", "x-llm-d-request-dropped-reason": "rejected-no-endpoints"},
            )  # fmt: skip
        gw.scheduler.pre_request(req, result, self.fleet, arrival)
        ranked = [int(x) for x in result.ranked[: self.settings.max_retries + 1]]
        return await self._forward(request, req, raw, ranked, result, arrival, rid)

    async def _forward(
        self,
        request: web.Request,
        req: SchedRequest,
        raw: bytes,
        ranked: list[int],
        result: SchedulingResult,
        arrival: float,
        rid: str,
    ) -> web.StreamResponse:
        gw = self.gw
        fleet = self.fleet
        headers = self._forward_headers(request, rid)
        key = (req.model, req.model)
        last = "no endpoint was tried"
        for attempt, ep in enumerate(ranked):
            if attempt:
                gw.stats.retries += 1
            endpoint = fleet.endpoints[ep]
            ticket = self.accounting.start(req, result, ep)
            ex: Exchange | None = None
            deadline = asyncio.get_running_loop().call_later(self.settings.request_timeout_s, self._expire, rid)
            try:
                try:
                    ex = await self.pool.request(endpoint.url, "POST", request.raw_path, headers, raw)
                except UpstreamError as exc:
                    raise _Upstream(f"{endpoint.name}: {exc}") from None
                self._live[rid] = ex
                if ex.status != 200:
                    payload = await ex.read()
                    if ex.status in RETRYABLE_STATUS and attempt + 1 < len(ranked):
                        if ex.status >= 500:
                            gw.data.report_failure(ep)
                        last = f"{endpoint.name} answered {ex.status}"
                        continue
                    gw.stats.errors[(*key, str(ex.status))] += 1
                    if ex.status >= 500:
                        gw.data.report_failure(ep)
                    hdrs = {"content-type": ex.header(b"content-type") or "application/json"}
                    if (ra := ex.header(b"retry-after")) is not None:
                        hdrs["retry-after"] = ra
                    hdrs.update(self._debug_headers(result, ep))
                    return web.Response(status=ex.status, body=payload, headers=hdrs)
                gw.stats.per_endpoint[ep] += 1
                if req.stream:
                    try:
                        await ex.wait_body()
                    except UpstreamError as exc:
                        raise _Upstream(f"{endpoint.name} failed before its first byte: {exc}") from None
                    first = ex.take_buffered()
                    if not first:
                        raise _Upstream(f"{endpoint.name} ended the stream before its first byte")
                    now = _clock()
                    self.accounting.first_token(ticket)
                    gw.scheduler.first_token(req, ep, now)
                    return await self._relay(request, req, ex, first, result, ep, arrival, now, rid)
                try:
                    payload = await ex.read()
                except UpstreamError as exc:
                    raise _Upstream(f"{endpoint.name} failed before its response: {exc}") from None
                now = _clock()
                self.accounting.first_token(ticket)
                m = _USAGE.search(payload)
                out_tokens = int(m.group(1)) if m else 0
                st = gw.stats
                st.ttft[False].observe(now - arrival)
                st.duration.observe(now - arrival)
                st.input_tokens.observe(req.prompt_tokens)
                st.output_tokens.observe(out_tokens)
                gw.scheduler.complete(req, ep, now, out_tokens)
                gw.data.report_success(ep)
                return web.Response(body=payload, content_type="application/json",
                                    headers={"x-request-id": rid, **self._debug_headers(result, ep)})  # fmt: skip
            except _Upstream as exc:
                gw.data.report_failure(ep)
                gw.scheduler.failed(req, ep, _clock())
                last = str(exc)
                log.info("request %s: %s", rid, last)
                continue
            finally:
                deadline.cancel()
                self._live.pop(rid, None)
                self.accounting.end(ticket)
                if ex is not None and not ex.done.done():
                    ex.abort()  # client gone or error: the engine sees the disconnect and aborts
        gw.stats.errors[(*key, "502")] += 1
        return error_response(502, f"All {len(ranked)} upstream attempts failed; last: {last}")

    def _expire(self, rid: str) -> None:
        ex = self._live.get(rid)
        if ex is not None:
            log.warning("request %s: upstream timeout after %.0f s", rid, self.settings.request_timeout_s)
            ex.abort()

    async def _relay(
        self,
        request: web.Request,
        req: SchedRequest,
        ex: Exchange,
        first: bytes,
        result: SchedulingResult,
        ep: int,
        arrival: float,
        t_first: float,
        rid: str,
    ) -> web.StreamResponse:
        """Stream the rest of the body to the client as it arrives.

        After aiohttp has sent the headers, chunks are framed (HTTP/1.1 chunked encoding) and
        written straight to the client's transport from the upstream's ``data_received``: no
        task switch per token. aiohttp writes the closing chunk (``write_eof``)."""
        gw = self.gw
        resp = web.StreamResponse(status=200, headers={
            "content-type": ex.header(b"content-type") or "text/event-stream; charset=utf-8",
            "cache-control": "no-cache", "x-request-id": rid, **self._debug_headers(result, ep),
        })  # fmt: skip
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        tr = request.transport
        assert tr is not None
        counts = [first.count(b"data: {"), 0]
        usage: list[re.Match[bytes] | None] = [_USAGE.search(first)]
        tr.write(b"%x\r\n%b\r\n" % (len(first), first))
        loop = asyncio.get_running_loop()

        def resume_when_drained() -> None:
            if tr.is_closing():
                return
            if tr.get_write_buffer_size() < _LOW_WATER:
                ex.resume()
            else:
                loop.call_later(0.005, resume_when_drained)

        def sink(chunk: bytes) -> None:
            if tr.is_closing():
                ex.abort()
                return
            tr.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            counts[0] += chunk.count(b"data: {")
            if b'"usage"' in chunk:
                usage[0] = _USAGE.search(chunk) or usage[0]
            if tr.get_write_buffer_size() > _HIGH_WATER:  # slow client: stop reading the engine
                ex.pause()
                loop.call_later(0.005, resume_when_drained)

        ex.set_sink(sink)
        broken = False
        try:
            await ex.done
        except UpstreamError as exc:
            broken = True
            log.warning("request %s: upstream %s broke mid-stream: %s", rid, self.fleet.endpoints[ep].name, exc)
        now = _clock()
        out_tokens = int(usage[0].group(1)) if usage[0] else counts[0]
        st = gw.stats
        st.ttft[True].observe(t_first - arrival)
        st.duration.observe(now - arrival)
        st.input_tokens.observe(req.prompt_tokens)
        st.output_tokens.observe(out_tokens)
        if out_tokens > 1:
            st.tpot.observe((now - t_first) / (out_tokens - 1))
        if broken:
            gw.data.report_failure(ep)
            gw.scheduler.failed(req, ep, now)
            st.errors[(req.model, req.model, "502")] += 1
            tr.close()  # the client must see a broken stream, not a clean end
            return resp
        gw.scheduler.complete(req, ep, now, out_tokens)
        gw.data.report_success(ep)
        try:
            await resp.write_eof()
        except ConnectionResetError:  # the client left after the last chunk: nothing to tell it
            log.debug("request %s: client went away before the end of stream", rid)
        return resp
