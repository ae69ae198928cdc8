"""UnigramTokenizer: parity with Hugging Face `tokenizers` (Unigram + Metaspace), compression against
sentencepiece's unigram trainer, sampling distribution, save/load and bad input."""
import io
import math
import random
from collections import Counter

import pytest
import sentencepiece
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers

from llm_zero.data.corpora import load_text
from llm_zero.tokenizer import UnigramTokenizer
from llm_zero.tokenizer.unigram import metaspace_split


def hf_of(tok):
    hf = Tokenizer(models.Unigram(list(zip(tok.pieces, tok.scores)), unk_id=tok.unk_id, byte_fallback=tok.byte_fallback))
    hf.pre_tokenizer = pre_tokenizers.Metaspace()
    return hf


@pytest.fixture(scope="module")
def shakespeare_lines():
    return load_text("tinyshakespeare").splitlines()


@pytest.fixture(scope="module")
def trained(shakespeare_lines):
    "Trained on the Python docs, so Shakespeare is out-of-domain text for the parity checks."
    return UnigramTokenizer.train(load_text().splitlines()[:6000], 1500)


@pytest.fixture(scope="module")
def trained_bytes():
    return UnigramTokenizer.train(load_text().splitlines()[:3000], 1200, byte_fallback=True)


# --- parity with Hugging Face on real corpora --------------------------------------------------

@pytest.mark.parametrize("corpus", ["tinyshakespeare", "python-docs"])
def test_parity_real_corpora(trained, trained_bytes, corpus):
    text = load_text(corpus)
    for tok in (trained, trained_bytes):
        assert tok.encode(text) == hf_of(tok).encode(text).ids


def test_roundtrip_lines(trained_bytes, shakespeare_lines):
    lines = [l for l in shakespeare_lines[:3000] if "\u2581" not in l]
    assert [trained_bytes.decode(trained_bytes.encode(l)) for l in lines] == lines


# --- parity with Hugging Face on arbitrary vocabularies and text ------------------------------

pieces_st = st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=40, unique=True)


@st.composite
def vocab_and_text(draw):
    pieces = draw(pieces_st)
    # Integer scores make ties common, which checks the tie-breaking order; floats check the sums.
    score = st.one_of(st.integers(-12, 0).map(float), st.floats(-20, 0, allow_nan=False))
    unk = draw(st.sampled_from(["<unk>", "[UNK]"]))
    pieces = [p for p in pieces if p != unk]
    vocab = [(unk, 0.0)] + [(p, draw(score)) for p in pieces]
    if draw(st.booleans()):
        vocab.insert(draw(st.integers(0, len(vocab))), ("\u2581", draw(score)))
        vocab = list(dict(vocab).items())
    unk_id = [p for p, _ in vocab].index(unk)
    chunks = st.one_of(st.sampled_from([p for p, _ in vocab]), st.text(max_size=6), st.just(" "), st.just("  "))
    text = "".join(draw(st.lists(chunks, max_size=12)))
    return vocab, unk_id, text


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vocab_and_text())
def test_parity_hypothesis(data):
    vocab, unk_id, text = data
    tok = UnigramTokenizer.from_pieces(vocab, unk_id=unk_id)
    assert tok.encode(text) == hf_of(tok).encode(text).ids


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60))
def test_parity_hypothesis_trained(trained_bytes, text):
    assert trained_bytes.encode(text) == hf_of(trained_bytes).encode(text).ids
    if "\u2581" not in text and not text.startswith(" "):
        assert trained_bytes.decode(trained_bytes.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_metaspace_split_matches_hf(text):
    assert metaspace_split(text) == [w for w, _ in pre_tokenizers.Metaspace().pre_tokenize_str(text)]


# --- sampling ----------------------------------------------------------------------------------

def test_sampling_distribution():
    "Samples follow P(x)**alpha / Z over all segmentations, computed here by enumeration."
    vocab = [("<unk>", 0.0), ("\u2581", -2.0), ("\u2581a", -3.0), ("a", -2.5), ("b", -2.0), ("ab", -3.5),
             ("\u2581ab", -4.0), ("\u2581abb", -6.0), ("bb", -3.0)]
    tok = UnigramTokenizer.from_pieces(vocab)
    score, word, alpha = dict(vocab), "\u2581abb", 0.5

    def segs(w):
        if not w: yield []; return
        for j in range(1, len(w) + 1):
            if w[:j] in score: yield from ([w[:j], *r] for r in segs(w[j:]))
    all_segs = [tuple(s) for s in segs(word)]
    weights = [math.exp(alpha * sum(score[p] for p in s)) for s in all_segs]
    expected = {s: w / sum(weights) for s, w in zip(all_segs, weights)}
    rng, n = random.Random(1), 20_000
    counts = Counter(tuple(tok.tokenize("abb", sample=True, alpha=alpha, rng=rng)) for _ in range(n))
    assert set(counts) <= set(expected)
    for s, p in expected.items():  # within 5 standard errors
        assert abs(counts[s] / n - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-9, (s, counts[s] / n, p)


def test_sampling_roundtrip_and_bytes(trained_bytes):
    rng = random.Random(0)
    text = "Sampling keeps every character: naïve café, 東京 ☃!"
    outs = {tuple(trained_bytes.encode(text, sample=True, rng=rng)) for _ in range(30)}
    assert len(outs) > 1
    assert all(trained_bytes.decode(list(o)) == text for o in outs)


# --- quality: compression against sentencepiece -----------------------------------------------

def test_compression_within_2pct_of_sentencepiece(shakespeare_lines):
    lines = shakespeare_lines[:15000]
    ours = UnigramTokenizer.train(lines, 1000)
    buf = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, vocab_size=1000, model_type="unigram", bos_id=-1, eos_id=-1,
        character_coverage=1.0, normalization_rule_name="identity", remove_extra_whitespaces=False,
        num_threads=2, minloglevel=2)
    sp = sentencepiece.SentencePieceProcessor(model_proto=buf.getvalue())
    assert len(ours) == sp.get_piece_size() == 1000
    nbytes = sum(len(l.encode()) for l in lines)
    ours_tpb = sum(len(ours.encode(l)) for l in lines) / nbytes
    spm_tpb = sum(len(sp.encode(l)) for l in lines) / nbytes
    print(f"tokens/byte: llm_zero {ours_tpb:.4f} sentencepiece {spm_tpb:.4f} ratio {ours_tpb / spm_tpb:.4f}")
    assert abs(ours_tpb / spm_tpb - 1) < 0.02


def test_training_invariants(trained):
    assert len(trained) == 1500 and trained.pieces[0] == "<unk>" and trained.unk_id == 0
    assert len(set(trained.pieces)) == len(trained.pieces)
    chars = {c for l in load_text().splitlines()[:6000] for c in metaspace_split(l) for c in c}
    assert chars <= set(trained.pieces)  # every character of the training text is a piece
    learned = trained.scores[1:]
    assert learned == sorted(learned, reverse=True) and all(s < 0 for s in learned)
    assert all("\u2581" not in p[1:] for p in trained.pieces)


def test_tiny_texts():
    "Texts with no repeated substrings still train (to the characters) and warn that the vocabulary is short."
    with pytest.warns(UserWarning, match=r"only supports 3 pieces \(asked for vocab_size=10\)"):
        tok = UnigramTokenizer.train("a", 10)
    assert sorted(tok.pieces) == sorted(["<unk>", "a", "\u2581"]) and tok.decode(tok.encode("a a")) == "a a"
    with pytest.warns(UserWarning):
        tok = UnigramTokenizer.train(["", "hello hello world world hello", ""], 40)
    assert tok.tokenize("hello")[0] == "\u2581hello" and tok.decode(tok.encode("world hello")) == "world hello"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\u2581"), max_size=30),
                min_size=1, max_size=20), st.integers(0, 40))
def test_train_any_unicode(texts, extra):
    "Training on arbitrary Unicode keeps every character, respects vocab_size and round-trips the texts."
    n_chars = len({c for t in texts for w in metaspace_split(t) for c in w})
    if n_chars == 0:
        return
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = UnigramTokenizer.train(texts, n_chars + 1 + extra)
    assert n_chars + 1 <= len(tok) <= n_chars + 1 + extra
    for t in texts:
        assert tok.decode(tok.encode(t)) == (t[1:] if t.startswith(" ") else t)
        assert tok.encode(t) == hf_of(tok).encode(t).ids


def test_byte_fallback_layout(trained_bytes):
    assert trained_bytes.pieces[1:257] == [f"<0x{b:02X}>" for b in range(256)]
    ids = trained_bytes.encode("☃")
    assert [trained_bytes.pieces[i] for i in ids][-3:] == ["<0xE2>", "<0x98>", "<0x83>"]


# --- save / load and bad input ----------------------------------------------------------------

def test_save_load(tmp_path, trained_bytes):
    path = trained_bytes.save(tmp_path / "t.json")
    again = UnigramTokenizer.load(path)
    assert again.pieces == trained_bytes.pieces and again.scores == trained_bytes.scores
    assert again.byte_fallback and again.encode("héllo ☃") == trained_bytes.encode("héllo ☃")


@pytest.mark.parametrize("content,msg", [
    ("not json at all", "is not a UnigramTokenizer file"),
    ('{"model": {"type": "Unigram"}}', "is not a UnigramTokenizer file"),
    ('{"format": "llm_zero.unigram", "version": 99, "pieces": []}', "format version 99"),
    ('{"format": "llm_zero.unigram", "version": 1, "unk_id": 0, "pieces": [["a"]]}', "is corrupt"),
    ('{"format": "llm_zero.unigram", "version": 1, "unk_id": 5, "pieces": [["a", -1.0]]}', "unk_id=5"),
    ('{"format": "llm_zero.unigram", "version": 1, "unk_id": 0, "pieces": [["a", "x"]]}', "scores must be finite"),
])
def test_load_rejects(tmp_path, content, msg):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(ValueError, match=msg) as e:
        UnigramTokenizer.load(p)
    assert "bad.json" in str(e.value)


def test_load_binary_file(tmp_path):
    p = tmp_path / "model.bin"
    p.write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match="model.bin is not a UnigramTokenizer file"):
        UnigramTokenizer.load(p)


def test_bad_input(trained):
    with pytest.raises(ValueError, match=r"Token id 1500 is out of range: .* 0\.\.1499"):
        trained.decode([3, 1500])
    with pytest.raises(ValueError, match="Token id -1 is out of range"):
        trained.decode([-1])
    with pytest.raises(TypeError, match="encode expects a str"):
        trained.encode(None)
    with pytest.raises(TypeError, match="got int"):
        UnigramTokenizer.train(42, 100)
    with pytest.raises(ValueError, match=r"below the 7 distinct characters .* use vocab_size >= 8"):
        UnigramTokenizer.train("abc def", 7)
    with pytest.raises(ValueError, match="empty"):
        UnigramTokenizer.train([], 100)
    with pytest.raises(ValueError, match="appears twice"):
        UnigramTokenizer.from_pieces([("<unk>", 0.0), ("x", -1.0), ("x", -2.0)])
    with pytest.raises(ValueError, match="at least one piece"):
        UnigramTokenizer.from_pieces([])
    with pytest.raises(ValueError, match=r"Piece 1 is \('a', -1.0, 3\): expected \(piece, score\) pairs"):
        UnigramTokenizer.from_pieces([("<unk>", 0.0), ("a", -1.0, 3)])
    with pytest.raises(ValueError, match="scores must be finite"):
        UnigramTokenizer.from_pieces([("<unk>", 0.0), ("a", float("nan"))])
