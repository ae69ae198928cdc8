"""WordPieceTokenizer against Hugging Face `tokenizers`' BERT pipeline (BertNormalizer, BertPreTokenizer,
WordPiece model), the likelihood trainer against a naive re-count, and the bad-input errors.

No BERT vocabulary can be downloaded here, so every vocabulary is trained in the test: by llm_zero's own
likelihood trainer and by Hugging Face's WordPieceTrainer, cased and uncased, on text that includes
accents, Greek, Cyrillic, CJK, emoji and control characters as well as Shakespeare and Python's docs.
"""
import json
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from llm_zero.data.corpora import load_text
from llm_zero.tokenizer import WordPieceTokenizer, bert_normalize, bert_pre_tokenize, train_wordpiece
from llm_zero.tokenizer.wordpiece import BERT_SPECIAL_TOKENS

MULTILINGUAL = """Crème brûlée, naïveté, Ångström, São Paulo, Zürich, façade, jalapeño, Øresund, Łódź.
Ἐν ἀρχῇ ἦν ὁ λόγος. ΣΟΦΙΑ σοφία. Москва — столица России. Привет, мир! Ελληνικά.
北京大学是中国的一所大学。東京タワーは高い。한국어 문장입니다. ひらがなとカタカナ。
İstanbul'da kış. Straße, Fußgänger. ﬁne ligatures, x² ½ ℌ Ⅻ. 🤗 emoji 👍🏽 and ZWJ 👨‍👩‍👧.
Tabs\tand\u00a0non-breaking\u2003spaces, zero\u200bwidth, bell\x07 and NUL\x00 and \ufffd.
"""
# (lowercase, strip_accents) as BertNormalizer takes them; None means "strip when lowercasing".
NORMALISERS = [(True, None), (False, None), (False, True), (True, False)]
SHAKESPEARE = load_text("tinyshakespeare")
DOCS = load_text()
TRAIN = [SHAKESPEARE[:150_000], DOCS[:150_000], MULTILINGUAL * 3]


def hf_pipeline(vocab: list[str], lowercase: bool) -> Tokenizer:
    "Hugging Face's BERT tokenization over `vocab` (id = position), as BertWordPieceTokenizer builds it."
    t = Tokenizer(models.WordPiece({tok: i for i, tok in enumerate(vocab)}, unk_token="[UNK]", max_input_chars_per_word=100))
    t.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return t


def hf_trained_vocab(lowercase: bool, vocab_size: int = 3000) -> list[str]:
    t = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    t.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    t.train_from_iterator(TRAIN, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(BERT_SPECIAL_TOKENS),
                                                           show_progress=False))
    v = t.get_vocab()
    return sorted(v, key=v.get)


@pytest.fixture(scope="module", params=["ours-uncased", "ours-cased", "hf-uncased", "hf-cased"])
def pair(request, tmp_path_factory):
    "(llm_zero tokenizer loaded from a vocab.txt, Hugging Face pipeline over the same file)."
    trainer, case = request.param.split("-")
    lowercase = case == "uncased"
    if trainer == "ours":
        vocab = WordPieceTokenizer.train(TRAIN, vocab_size=3000, lowercase=lowercase).id_to_token
    else:
        vocab = hf_trained_vocab(lowercase)
    path = tmp_path_factory.mktemp(request.param) / "vocab.txt"
    path.write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    return WordPieceTokenizer.from_vocab_file(path, lowercase=lowercase), hf_pipeline(vocab, lowercase)


# --- Unicode tables ------------------------------------------------------------------------------------

def _blocks(step=512):
    "All code points except surrogates, in blocks joined by '|' (which every stage leaves alone)."
    cps = [i for i in range(0x110000) if not 0xD800 <= i < 0xE000 and i != ord("|")]
    for k in range(0, len(cps), step):
        yield [chr(i) for i in cps[k:k + step]]


def _disagree(ours, theirs):
    "Characters c for which ours(c) != theirs(c), found block by block."
    bad = set()
    for block in _blocks():
        if ours("|".join(block)) != theirs("|".join(block)):
            bad |= {c for c in block if ours(c) != theirs(c)}
    return bad


@pytest.fixture(scope="module")
def unicode_disagreements():
    """Characters that Hugging Face's Unicode tables (an older Unicode release, via the unicode_categories
    crate, and Rust's std for lowercasing) classify differently from Python/`regex`'s current tables."""
    bad = set()
    for lowercase, strip in NORMALISERS:
        hf = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=strip)
        bad |= _disagree(lambda s: bert_normalize(s, lowercase=lowercase, strip_accents=strip), hf.normalize_str)
    pt = pre_tokenizers.BertPreTokenizer()
    bad |= _disagree(bert_pre_tokenize, lambda s: [w for w, _ in pt.pre_tokenize_str(s)])
    return bad


def test_unicode_table_differences_are_few_and_recent(unicode_disagreements):
    bad = unicode_disagreements
    print(f"{len(bad)} of 1,112,062 code points classified differently:",
          " ".join(f"U+{ord(c):04X}" for c in sorted(bad)[:40]), "...", file=sys.stderr)
    assert len(bad) < 1000, len(bad)
    # Latin, Greek, Cyrillic, CJK ideographs and the common punctuation blocks all agree.
    assert not [c for c in bad if ord(c) < 0x0590 or 0x4E00 <= ord(c) <= 0x9FFF or 0x2000 <= ord(c) <= 0x2E42]


# --- parity ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tinyshakespeare", "python-docs", "multilingual"])
def test_encode_matches_hf_on_corpora(pair, name):
    ours, hf = pair
    text = {"tinyshakespeare": SHAKESPEARE, "python-docs": DOCS, "multilingual": MULTILINGUAL}[name]
    ids = ours.encode(text)
    assert ids == hf.encode(text).ids
    assert ours.tokenize(text[:5000]) == hf.encode(text[:5000]).tokens
    assert ours.decode(ids[:3000]) == decoders.WordPiece(cleanup=False).decode([ours.id_to_token[i] for i in ids[:3000]])


def _text_strategy(pieces, bad):
    chars = st.characters(blacklist_categories=("Cs",)).filter(lambda c: c not in bad)
    return st.lists(st.one_of(st.sampled_from(pieces), st.text(chars, max_size=6),
                              st.sampled_from([" ", "\n", "\t", "\u00a0", "\x00", "\u200b", "##", "[UNK]", "́", "Σ"])),
                    max_size=25).map("".join)


@pytest.mark.parametrize("lowercase, strip", NORMALISERS)
def test_encode_matches_hf_on_random_unicode(lowercase, strip, unicode_disagreements):
    vocab = WordPieceTokenizer.train(TRAIN, vocab_size=2000, lowercase=lowercase, strip_accents=strip).id_to_token
    ours = WordPieceTokenizer(vocab, lowercase=lowercase, strip_accents=strip)
    hf = hf_pipeline(vocab, lowercase)
    hf.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=strip)
    # Pieces from the vocabulary (prefix stripped, some upper-cased) make long matches likely.
    pieces = sorted({t.removeprefix("##") for t in vocab[len(BERT_SPECIAL_TOKENS):]} | {"É", "ÉTÉ", "İ", "ǅ", "北京"})
    pieces += [p.upper() for p in pieces[::7]]

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_text_strategy(pieces, unicode_disagreements))
    def check(text):
        assert ours.normalize(text) == hf.normalizer.normalize_str(text)
        assert ours.encode(text) == hf.encode(text).ids
    check()


def test_special_tokens_match_bert_post_processor(pair):
    ours, hf = pair
    hf.post_processor = processors.BertProcessing(("[SEP]", ours.vocab["[SEP]"]), ("[CLS]", ours.vocab["[CLS]"]))
    for text in ["", "Hello, world!", MULTILINGUAL]:
        assert ours.encode(text, add_special_tokens=True) == hf.encode(text).ids
        assert ours.encode(text) == hf.encode(text, add_special_tokens=False).ids


def test_long_words_and_unmatchable_words_become_one_unk():
    vocab = ["[UNK]", "a", "##a", "b"]
    ours, hf = WordPieceTokenizer(vocab), hf_pipeline(vocab, True)
    for text in ["a" * 100, "a" * 101, "ab", "ba", "aaa b " + "a" * 150, "xa a"]:
        assert ours.tokenize(text) == hf.encode(text).tokens
    assert ours.tokenize("a" * 101 + " ab b") == ["[UNK]", "[UNK]", "b"]


# --- training ----------------------------------------------------------------------------------------

def naive_train(word_counts, vocab_size, min_frequency=2, prefix="##"):
    "Re-count every piece and pair after every merge; same score and tie-breaking as train_wordpiece."
    alphabet = sorted({c for w in word_counts for c in w})
    vocab = [*alphabet, *(prefix + c for c in alphabet)]
    words = {w: [w[0], *(prefix + c for c in w[1:])] for w in word_counts}
    while len(vocab) < vocab_size:
        pieces, pairs = {}, {}
        for w, f in word_counts.items():
            for p in words[w]: pieces[p] = pieces.get(p, 0) + f
            for ab in zip(words[w], words[w][1:]): pairs[ab] = pairs.get(ab, 0) + f
        cands = [(-c / (pieces[a] * pieces[b]), -c, a, b) for (a, b), c in pairs.items() if c >= min_frequency]
        if not cands: break
        _, _, a, b = min(cands)
        new = a + b[len(prefix):]
        if new not in vocab: vocab.append(new)
        for w, syms in words.items():
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b: out.append(new); i += 2
                else: out.append(syms[i]); i += 1
            words[w] = out
    return vocab


def test_trainer_equals_naive_recount_on_the_verdict():
    counts = {}
    for w in bert_pre_tokenize(bert_normalize(load_text("the-verdict"))): counts[w] = counts.get(w, 0) + 1
    fast, merges = train_wordpiece(counts, 700)
    assert fast == naive_train(counts, 700)
    assert len(fast) == 700 and len(merges) >= 700 - len(naive_train(counts, 0))
    # The score of each merge is c(ab) / (c(a) c(b)) with the counts at that moment: check the first by hand.
    a, b, score = merges[0]
    seg = {w: [w[0], *("##" + c for c in w[1:])] for w in counts}
    ca = sum(f * seg[w].count(a) for w, f in counts.items())
    cb = sum(f * seg[w].count(b) for w, f in counts.items())
    cab = sum(f * sum(x == (a, b) for x in zip(seg[w], seg[w][1:])) for w, f in counts.items())
    assert score == pytest.approx(cab / (ca * cb))


words = st.text(st.sampled_from("abcab#"), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(words, st.integers(1, 20), min_size=1, max_size=12), st.integers(0, 40), st.integers(1, 3))
def test_trainer_equals_naive_recount_on_random_counts(counts, extra, min_frequency):
    size = len(naive_train(counts, 0)) + extra
    assert train_wordpiece(counts, size, min_frequency=min_frequency)[0] == naive_train(counts, size, min_frequency)


def test_trained_tokenizer_covers_its_training_words():
    tok = WordPieceTokenizer.train(TRAIN, vocab_size=3000)
    assert len(tok) == 3000 and tok.id_to_token[:5] == list(BERT_SPECIAL_TOKENS)
    ids = tok.encode(" ".join(TRAIN))
    assert tok.vocab["[UNK]"] not in ids  # every character was seen, in both forms
    assert WordPieceTokenizer.train(["to be", "or not"], 60, min_frequency=1).id_to_token == \
        WordPieceTokenizer.train("to be\nor not", 60, min_frequency=1).id_to_token


def test_training_stops_when_no_pair_is_frequent_enough():
    tok = WordPieceTokenizer.train("ab cd", vocab_size=100)  # every pair occurs once < min_frequency=2
    assert len(tok) == len(BERT_SPECIAL_TOKENS) + 8


# --- files and bad input -----------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    tok = WordPieceTokenizer.train(TRAIN, vocab_size=1500, lowercase=False)
    tok.save(tmp_path / "wp.json")
    again = WordPieceTokenizer.load(tmp_path / "wp.json")
    assert again.id_to_token == tok.id_to_token and not again.lowercase
    assert again.encode(MULTILINGUAL) == tok.encode(MULTILINGUAL)


@pytest.mark.parametrize("content, message", [
    (b"[PAD]\n[UNK]\n", "is not a WordPieceTokenizer file"),
    (b"\xff\xfe\x00garbage", "is not a WordPieceTokenizer file"),
    (json.dumps({"format": "something.else", "vocab": []}).encode(), "is not a WordPieceTokenizer file"),
    (json.dumps({"format": "llm_zero.WordPieceTokenizer", "version": 99}).encode(), "format version 99"),
    (json.dumps({"format": "llm_zero.WordPieceTokenizer", "version": 1, "vocab": ["[UNK]"]}).encode(), "lacks lowercase"),
    (b'{"format": "llm_zero.WordPieceTokenizer", "vers', "is not a WordPieceTokenizer file"),
])
def test_load_rejects_foreign_and_corrupt_files(tmp_path, content, message):
    (tmp_path / "f").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        WordPieceTokenizer.load(tmp_path / "f")


def test_vocab_file_errors(tmp_path):
    (tmp_path / "dup.txt").write_text("[UNK]\na\nb\na\n")
    with pytest.raises(ValueError, match=r"token 'a' appears twice in the vocabulary \(ids 1 and 3\)"):
        WordPieceTokenizer.from_vocab_file(tmp_path / "dup.txt")
    (tmp_path / "nounk.txt").write_text("a\n##b\n")
    with pytest.raises(ValueError, match="'\\[UNK\\]' is not in the vocabulary"):
        WordPieceTokenizer.from_vocab_file(tmp_path / "nounk.txt")
    with pytest.raises(ValueError, match="needs '\\[CLS\\]'"):
        WordPieceTokenizer.from_vocab_file(tmp_path / "nounk.txt", unk_token="a").encode("b", add_special_tokens=True)


def test_bad_input_errors():
    tok = WordPieceTokenizer(["[UNK]", "a", "##b"])
    for bad in (None, 3, ["a"], b"ab"):
        with pytest.raises(TypeError, match="text must be a str"):
            tok.encode(bad)
    with pytest.raises(TypeError, match="text_or_texts must be a str or an iterable of str, not bytes"):
        WordPieceTokenizer.train(b"bytes", vocab_size=50)
    with pytest.raises(TypeError, match="training text 1 must be a str, not bytes"):
        WordPieceTokenizer.train(["ok", b"bytes"], vocab_size=50)
    with pytest.raises(ValueError, match="token id 3 \\(position 1\\) is out of range: this vocabulary has ids 0..2"):
        tok.decode([1, 3])
    with pytest.raises(ValueError, match="token id -1"):
        tok.decode([-1])
    with pytest.raises(TypeError, match="token ids must be integers; got 'a' at position 0"):
        tok.decode(["a"])
    with pytest.raises(ValueError, match="vocab_size=20 is too small.*pass vocab_size >= 25"):
        WordPieceTokenizer.train("abcde fghij", vocab_size=20)  # 5 specials + 10 chars in both forms
    with pytest.raises(TypeError, match="vocab_size must be an int, not '100'"):
        WordPieceTokenizer.train("abc", vocab_size="100")
    assert tok.decode([1, 2, 1]) == "ab a"
