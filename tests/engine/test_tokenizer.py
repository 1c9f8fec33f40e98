import random
import subprocess
import sys

import pytest

from rastos.engine.chat import ChatTemplate, ChatTemplateError
from rastos.engine.textgen import TextSource, sample_eos_at
from rastos.engine.tokenizer import BuiltinTokenizer, HFTokenizer, load_tokenizer

PROSE = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, "
    "it was the season of Darkness, it was the spring of hope, it was the winter of despair, we had "
    "everything before us, we had nothing before us, we were all going direct to Heaven, we were all going "
    "direct the other way. In short, the period was so far like the present period, that some of its "
    "noisiest authorities insisted on its being received, for good or for evil, in the superlative degree."
)


def test_about_four_characters_per_token_on_english():
    ratio = len(PROSE) / len(BuiltinTokenizer().encode(PROSE))
    assert 3.5 <= ratio <= 4.6, ratio


def test_pieces_cover_the_text_exactly():
    t = BuiltinTokenizer()
    text = "snake_case x=1234567; émigré naïve — 'quoted' \n\n  indented\ttab"
    assert "".join(s for _, s in t.pieces(text)) == text


def test_ids_are_stable_across_processes():
    code = (
        "from rastos.engine.tokenizer import BuiltinTokenizer as T; print(T().encode('Hello wonderful world, 2026!'))"
    )
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": str(s), "PATH": ""}).stdout
        for s in (0, 1, 2)
    }  # fmt: skip
    assert len(outs) == 1


def test_special_tokens_keep_llama3_ids():
    t = BuiltinTokenizer()
    ids = t.encode("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>")
    assert ids[0] == 128000 and ids[1] == 128006 and 128007 in ids and ids[-1] == 128009
    assert t.encode("hi", add_bos=True)[0] == 128000


def test_chat_template_turns_share_prefixes():
    tpl = ChatTemplate()
    t = BuiltinTokenizer()
    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Tell me a story."}]
    first = t.encode(tpl.render(msgs))
    src = TextSource(t, seed=5, eos_at=40)
    answer_ids = [src() for _ in range(40)]
    msgs2 = [*msgs, {"role": "assistant", "content": src.text()}, {"role": "user", "content": "More."}]
    second = t.encode(tpl.render(msgs2))
    assert second[: len(first) + len(answer_ids)] == first + answer_ids  # answer ends in <|eot_id|>


def test_chat_template_rejects_non_text_parts():
    with pytest.raises(ChatTemplateError, match="image_url"):
        ChatTemplate().render([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])


def test_text_is_deterministic_readable_and_ends_with_eos():
    t = BuiltinTokenizer()
    a, b, c = TextSource(t, 1, 30), TextSource(t, 1, 30), TextSource(t, 2, 30)
    ids_a = [a() for _ in range(30)]
    assert ids_a == [b() for _ in range(30)]
    assert ids_a != [c() for _ in range(30)]
    assert ids_a[-1] == t.eos_token_id and a.texts[-1] == ""
    words = a.text().split()
    assert len(words) >= 10 and a.text()[0].isupper()


def test_output_length_distribution_is_seeded_and_bounded():
    draws = [sample_eos_at(random.Random(s), 0, 400, 100, 0.8) for s in range(2000)]
    cut = sum(d is None for d in draws)
    lengths = sorted(d for d in draws if d is not None)
    assert 0 < cut < 200  # a few exceed max_tokens and end by length
    assert 70 <= lengths[len(lengths) // 2] <= 130
    assert all(1 <= d <= 400 for d in lengths)
    assert all(d >= 50 for d in (sample_eos_at(random.Random(s), 50, 400, 10, 0.8) for s in range(100)) if d)
    assert sample_eos_at(random.Random(3), 0, 400, 100, 0.8) == sample_eos_at(random.Random(3), 0, 400, 100, 0.8)


def test_local_hf_tokenizer_json(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["[UNK]", "<|eot_id|>", "<|begin_of_text|>"])
    tok.train_from_iterator([PROSE] * 20, trainer)
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    hf = load_tokenizer(str(path))
    assert isinstance(hf, HFTokenizer)
    assert hf.eos_token_id == tok.token_to_id("<|eot_id|>")
    ids = hf.encode("it was the best of times")
    assert ids == tok.encode("it was the best of times").ids
    text = "it was the age of wisdom"
    assert "".join(s for _, s in hf.pieces(text)) == text
    src = TextSource(hf, 3, None)
    assert all(isinstance(src(), int) for _ in range(20))
