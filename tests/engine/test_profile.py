import pytest

from rastos.engine.profile import list_profiles, load_profile
from rastos.errors import ConfigError


def test_builtin_profiles_load_and_hold_the_calibrated_capacity():
    names = list_profiles()
    assert {"llama3-8b-h100", "llama3-70b-tp4-h100"} <= set(names)
    p8 = load_profile("llama3-8b-h100")
    assert p8.block_size == 16
    assert p8.max_num_batched_tokens == 8192 and p8.max_num_seqs == 1024
    assert 430_000 <= p8.kv_cache_tokens <= 460_000
    p70 = load_profile("llama3-70b-tp4-h100")
    assert p70.tensor_parallel_size == 4
    assert 470_000 <= p70.kv_cache_tokens <= 500_000


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError, match="llama3-8b-h100"):
        load_profile("no-such-gpu")


def test_invalid_profile_file_names_the_field(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(
        "name: x\nmodel: m\ngpu: g\nmax_model_len: 100\nnum_gpu_blocks: 10\n"
        "step: {t_over_ms: -1, t_w_ms: 1, t_tok_us: 1, t_kv_us: 0, t_attn_ms: 0}\n"
    )
    with pytest.raises(ConfigError, match=r"step\.t_over_ms"):
        load_profile(str(f))


def test_overrides_are_validated():
    p = load_profile("llama3-8b-h100")
    assert p.with_overrides(num_gpu_blocks=100).num_gpu_blocks == 100
    with pytest.raises(ConfigError, match="num_gpu_blocks"):
        p.with_overrides(num_gpu_blocks=0)
