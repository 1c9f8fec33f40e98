"""KV events over ZMQ: vLLM's frames and msgpack layout, agreement with the cache, replay."""

import asyncio

import aiohttp
import msgpack
import pytest
import zmq
import zmq.asyncio
from zmq.utils.monitor import recv_monitor_message

from rastos.engine.hashing import wire_hash
from rastos.engine.kv_events import should_bind
from tests.conftest import base_url, free_port, running_server


async def replay_all(endpoint: str, start: int = 0) -> list[tuple[bytes, int, list]]:
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(endpoint)
    await sock.send_multipart([b"", start.to_bytes(8, "big")])
    out = []
    try:
        while True:
            frames = await asyncio.wait_for(sock.recv_multipart(), 10)
            _, topic, seq, payload = frames
            if int.from_bytes(seq, "big", signed=True) == -1:
                return out
            out.append((topic, int.from_bytes(seq, "big"), msgpack.unpackb(payload)))
    finally:
        sock.close(0)
        ctx.term()


def apply(events: list, state: set[int], map_format: bool) -> None:
    for ev in events:
        kind = ev["type"] if map_format else ev[0]
        if kind == "BlockStored":
            state.update(ev["block_hashes"] if map_format else ev[1])
        elif kind == "BlockRemoved":
            state.difference_update(ev["block_hashes"] if map_format else ev[1])
        elif kind == "AllBlocksCleared":
            state.clear()


async def await_publisher(sub: zmq.asyncio.Socket, monitor: zmq.asyncio.Socket) -> None:
    """Wait for the engine's PUB to connect, then let the SUB send its subscription.

    libzmq only forwards a bound SUB's subscription to a connecting PUB once the SUB socket
    processes commands (a poll or recv; pyzmq #1650), so a central indexer polls it once.
    """
    assert await monitor.poll(10_000), "engine never connected to the indexer"
    assert (await recv_monitor_message(monitor))["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED
    await sub.poll(0)


async def drive(srv, prompts: list[str]) -> None:
    async with aiohttp.ClientSession() as s:
        for p in prompts:
            body = {"model": "sim-model", "prompt": p, "max_tokens": 40, "ignore_eos": True}
            async with s.post(base_url(srv) + "/v1/completions", json=body) as r:
                assert r.status == 200


def test_bind_rule_follows_vllm():
    assert should_bind("tcp://*:5557") and should_bind("ipc:///tmp/x") and should_bind("inproc://x")
    assert not should_bind("tcp://127.0.0.1:5557") and not should_bind("tcp://indexer:5557")


@pytest.mark.parametrize("map_format", [False, True])
async def test_events_agree_with_cache_contents_and_replay(map_format):
    sub_port, replay_port = free_port(), free_port()
    ctx = zmq.asyncio.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"kv@")
    monitor = sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    sub.bind(f"tcp://127.0.0.1:{sub_port}")  # a central indexer; the engine dials it (vLLM's rule)
    try:
        async with running_server(
            kv_events=f"tcp://127.0.0.1:{sub_port}",
            kv_events_replay=f"tcp://127.0.0.1:{replay_port}",
            kv_events_map_format=map_format,
            num_gpu_blocks=40, max_model_len=512,  # small pool: later prompts evict earlier blocks
        ) as srv:  # fmt: skip
            await await_publisher(sub, monitor)
            prompts = [f"topic {i} " + "alpha beta gamma delta " * 25 for i in range(6)]
            await drive(srv, prompts)
            batches = await replay_all(f"tcp://127.0.0.1:{replay_port}")
            topic = f"kv@127.0.0.1:{srv.opts.port}@sim-model".encode()
            assert all(t == topic for t, _, _ in batches)
            assert [seq for _, seq, _ in batches] == list(range(len(batches)))
            state: set[int] = set()
            kinds = set()
            for _, _, (ts, events, dp_rank) in batches:
                assert isinstance(ts, float) and ts > 1.7e9 and dp_rank is None
                apply(events, state, map_format)
                kinds.update(e["type"] if map_format else e[0] for e in events)
            assert {"BlockStored", "BlockRemoved"} <= kinds
            assert state == {wire_hash(h) for h in srv.engine.kv.cached_hashes()}

            # a stored event carries the very tokens of the prompt blocks
            first = batches[0][2][1][0]
            tok_ids = first["token_ids"] if map_format else first[3]
            async with aiohttp.ClientSession() as s:
                async with s.post(base_url(srv) + "/tokenize", json={"prompt": prompts[0]}) as r:
                    prompt_ids = (await r.json())["tokens"]
            assert tok_ids[:16] == prompt_ids[:16]
            assert (first["block_size"] if map_format else first[4]) == 16

            # live subscriber saw the same batches (wait for the last one, bounded)
            live = []
            while not live or live[-1][0] < batches[-1][1]:
                _topic_f, seq, payload = await asyncio.wait_for(sub.recv_multipart(), 10)
                live.append((int.from_bytes(seq, "big"), msgpack.unpackb(payload)))
            by_seq = {seq: body for _, seq, body in batches}
            assert all(by_seq[seq] == body for seq, body in live)

            async with aiohttp.ClientSession() as s, s.post(base_url(srv) + "/reset_prefix_cache") as r:
                assert r.status == 200
            more = await replay_all(f"tcp://127.0.0.1:{replay_port}", start=len(batches))
            last = more[-1][2][1]
            assert last == ([{"type": "AllBlocksCleared"}] if map_format else [["AllBlocksCleared"]])
            assert srv.engine.kv.cached_hashes() == set()
    finally:
        monitor.close(0)
        sub.close(0)
        ctx.term()


async def test_engine_can_bind_and_use_sha256_cbor():
    port = free_port()
    ctx = zmq.asyncio.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    try:
        async with running_server(kv_events=f"tcp://127.0.0.1:{port}", kv_events_bind=True,
                                  hash_algo="sha256_cbor") as srv:  # fmt: skip
            sub.connect(f"tcp://127.0.0.1:{port}")
            # subscriptions propagate asynchronously: publish until one arrives (bounded)
            got = None
            for i in range(50):
                await drive(srv, [f"warm {i} " + "x y z " * 20])
                try:
                    got = await asyncio.wait_for(sub.recv_multipart(), 0.2)
                    break
                except TimeoutError:
                    continue
            assert got is not None
            _, events, _ = msgpack.unpackb(got[2])
            stored = [e for e in events if e[0] == "BlockStored"]
            assert stored and all(0 <= h < 2**64 for e in stored for h in e[1])
    finally:
        sub.close(0)
        ctx.term()
