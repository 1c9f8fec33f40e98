import hashlib

import cbor2
import pytest

from rastos.engine.hashing import BlockHasher, wire_hash


def test_sha256_cbor_matches_vllm_definition():
    h = BlockHasher("sha256_cbor", block_size=4, seed="0")
    none_hash = hashlib.sha256(cbor2.dumps("0", canonical=True)).digest()
    assert h.none_hash == none_hash
    toks = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    got = h.hash_blocks(toks, 0, None)
    b0 = hashlib.sha256(cbor2.dumps((none_hash, (1, 2, 3, 4), None), canonical=True)).digest()
    b1 = hashlib.sha256(cbor2.dumps((b0, (5, 6, 7, 8), None), canonical=True)).digest()
    assert got == [b0, b1]  # only full blocks are hashed
    assert wire_hash(b1) == int.from_bytes(b1, "big") & (2**64 - 1)


def test_default_seed_is_vllms_fixed_string(monkeypatch):
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    h = BlockHasher("sha256_cbor")
    assert h.none_hash == hashlib.sha256(cbor2.dumps("vllm-none-hash", canonical=True)).digest()


@pytest.mark.parametrize("algo", ["sha256", "sha256_cbor", "builtin"])
def test_chain_fingerprints_the_prefix(algo):
    h = BlockHasher(algo, block_size=16)
    a = list(range(64))
    b = list(range(64))
    b[20] = 999  # differs in block 1
    ha, hb = h.hash_blocks(a, 0, None), h.hash_blocks(b, 0, None)
    assert ha[0] == hb[0]
    assert ha[1] != hb[1] and ha[2] != hb[2] and ha[3] != hb[3]
    # incremental extension equals hashing at once
    assert h.hash_blocks(a, 2, ha[1]) == ha[2:]
    assert h.hash_one(ha[2], a[48:64], None) == ha[3]


def test_extra_keys_lora_on_every_block_salt_on_first():
    h = BlockHasher("sha256", block_size=4)
    toks = list(range(8))
    plain = h.hash_blocks(toks, 0, None)
    lora = h.hash_blocks(toks, 0, None, lora_name="ad1")
    salted = h.hash_blocks(toks, 0, None, cache_salt="s")
    assert plain[0] != lora[0] and plain[1] != lora[1]
    assert salted[0] != plain[0]
    assert h.extra_keys(1, None, "s") is None  # salt only in block 0


def test_builtin_is_deterministic_across_processes():
    import subprocess
    import sys

    code = (
        "from rastos.engine.hashing import BlockHasher;"
        "print(BlockHasher('builtin', 16, seed='fixed').hash_blocks(list(range(32)), 0, None, lora_name='x'))"
    )
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": str(seed), "PATH": ""}).stdout
        for seed in (1, 2)
    }  # fmt: skip
    assert len(outs) == 1
