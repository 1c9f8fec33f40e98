"""vLLM's KV-cache event stream over ZMQ, byte for byte.

Wire format (``vllm/distributed/kv_events.py``): a PUB socket sends three frames per batch,
``[topic, seq (8-byte big-endian, from 0), msgpack([ts, events, data_parallel_rank])]``, one
batch per engine step that produced events. Events are tagged arrays (vLLM before PR #42892,
``["BlockStored", hashes, parent, token_ids, block_size, lora_id, medium, lora_name?]``) or,
with ``map_format``, maps with a ``type`` key (newer vLLM). Block hashes go out as the low 64
bits of the engine's hash, unsigned.

As in vLLM, an endpoint with a wildcard host (``tcp://*:5557``), ``ipc://`` or ``inproc://``
is bound and any other tcp address is connected to (so engines can dial a central indexer);
``bind`` overrides that. The optional replay ROUTER socket answers
``[identity, b"", start_seq]`` with every buffered batch from ``start_seq`` on as
``[identity, b"", topic, seq, payload]`` and ends with ``[identity, b"", b"", seq=-1, b""]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import msgpack
import zmq
import zmq.asyncio

from rastos.engine.hashing import wire_hash
from rastos.engine.kv_cache import AllBlocksCleared, BlockRemoved, BlockStored, KVEvent

__all__ = ["KVEventPublisher", "encode_batch", "encode_event", "should_bind"]

log = logging.getLogger(__name__)
_END_SEQ = (-1).to_bytes(8, "big", signed=True)


def should_bind(endpoint: str) -> bool:
    """vLLM's rule: wildcard hosts, ipc and inproc are bound; other tcp hosts are dialled."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = endpoint.split("://", 1)[-1].rsplit(":", 1)[0]
    return host in ("*", "::", "[::]", "0.0.0.0")


def encode_event(ev: KVEvent, map_format: bool = False) -> Any:
    """One event as vLLM's msgspec encoder would lay it out."""
    if isinstance(ev, BlockStored):
        hashes = [wire_hash(h) for h in ev.block_hashes]
        parent = None if ev.parent_block_hash is None else wire_hash(ev.parent_block_hash)
        if map_format:
            d: dict[str, Any] = {
                "type": "BlockStored",
                "block_hashes": hashes,
                "parent_block_hash": parent,
                "token_ids": ev.token_ids,
                "block_size": ev.block_size,
                "lora_id": None,
                "medium": "GPU",
            }
            if ev.lora_name is not None:
                d["lora_name"] = ev.lora_name
            return d
        arr = ["BlockStored", hashes, parent, ev.token_ids, ev.block_size, None, "GPU"]
        if ev.lora_name is not None:
            arr.append(ev.lora_name)
        return arr
    if isinstance(ev, BlockRemoved):
        hashes = [wire_hash(h) for h in ev.block_hashes]
        if map_format:
            return {"type": "BlockRemoved", "block_hashes": hashes, "medium": "GPU"}
        return ["BlockRemoved", hashes, "GPU"]
    if isinstance(ev, AllBlocksCleared):
        return {"type": "AllBlocksCleared"} if map_format else ["AllBlocksCleared"]
    raise TypeError(f"not a KV event: {ev!r}")


def encode_batch(ts: float, events: list[KVEvent], map_format: bool = False, dp_rank: int | None = None) -> bytes:
    return msgpack.packb([ts, [encode_event(e, map_format) for e in events], dp_rank], use_bin_type=True)


class KVEventPublisher:
    """Publishes event batches; keeps the last ``buffer_steps`` batches for replay."""

    def __init__(
        self,
        endpoint: str,
        topic: str,
        *,
        replay_endpoint: str | None = None,
        buffer_steps: int = 10_000,
        hwm: int = 100_000,
        map_format: bool = False,
        bind: bool | None = None,
        dp_rank: int | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.topic = topic.encode()
        self.map_format = map_format
        self.dp_rank = dp_rank
        self.seq = 0
        self._buffer: deque[tuple[int, bytes]] = deque(maxlen=buffer_steps)
        self._ctx = zmq.Context()
        self._pub = self._ctx.socket(zmq.PUB)
        self._pub.setsockopt(zmq.SNDHWM, hwm)
        self._pub.setsockopt(zmq.LINGER, 0)
        if should_bind(endpoint) if bind is None else bind:
            self._pub.bind(endpoint)
        else:
            self._pub.connect(endpoint)
        self.replay_endpoint = replay_endpoint
        self._actx: zmq.asyncio.Context | None = None
        self._replay: zmq.asyncio.Socket | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start answering replay requests (only if a replay endpoint was given)."""
        if not self.replay_endpoint:
            return
        self._actx = zmq.asyncio.Context()
        self._replay = self._actx.socket(zmq.ROUTER)
        self._replay.setsockopt(zmq.LINGER, 0)
        self._replay.setsockopt(zmq.SNDHWM, 2 * (self._buffer.maxlen or 1) + 2)
        self._replay.bind(self.replay_endpoint)
        self._task = asyncio.create_task(self._serve_replay())

    def publish(self, events: list[KVEvent], ts: float) -> None:
        """Send one batch now; never blocks (ZMQ drops at the high-water mark)."""
        if not events:
            return
        payload = encode_batch(ts, events, self.map_format, self.dp_rank)
        seq = self.seq
        self.seq += 1
        self._buffer.append((seq, payload))
        try:
            self._pub.send_multipart((self.topic, seq.to_bytes(8, "big"), payload), flags=zmq.NOBLOCK)
        except zmq.Again:
            log.warning("KV event batch %d dropped: PUB high-water mark reached", seq)

    async def _serve_replay(self) -> None:
        assert self._replay is not None
        sock = self._replay
        while True:
            frames = await sock.recv_multipart()
            if len(frames) < 3:
                continue
            ident, start_raw = frames[0], frames[-1]
            try:
                start = int.from_bytes(start_raw, "big")
            except ValueError:
                continue
            for seq, payload in list(self._buffer):
                if seq >= start:
                    await sock.send_multipart((ident, b"", self.topic, seq.to_bytes(8, "big"), payload))
            await sock.send_multipart((ident, b"", b"", _END_SEQ, b""))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._replay is not None:
            self._replay.close(0)
        if self._actx is not None:
            self._actx.term()
        self._pub.close(0)
        self._ctx.term()
