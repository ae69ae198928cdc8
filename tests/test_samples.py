"""The judge of a base model's samples (issue 20, chapter 5l.10): dictionary words, the genre
classifier against scikit-learn's naive Bayes, segments, switches, and scripts/judge_samples.py."""
import importlib.util
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.naive_bayes import MultinomialNB

from conftest import ROOT

from llm_zero.eval import samples as S

DOCS = {
    "kitchen": ["stir the soup and taste the soup", "bake the bread, then slice the bread"],
    "harbour": ["the boat left the harbour at dawn", "sailors tied the boat to the pier"],
    "code": ["def f(x): return x", "import os; print(os.getcwd())"],
}
MODEL = ROOT / "experiments" / "python-docs-char"  # a small committed model that writes text


def test_naive_bayes_matches_scikit_learn():
    "Same word counts, add-one smoothing and equal priors: the same log-likelihoods."
    clf = S.GenreClassifier(DOCS)
    vec = CountVectorizer(token_pattern=S.WORD.pattern, lowercase=True)
    texts = [t for ts in DOCS.values() for t in ts]
    y = [k for k, ts in DOCS.items() for _ in ts]
    ref = MultinomialNB(alpha=1.0, fit_prior=False).fit(vec.fit_transform(texts), y)
    test = "Taste the bread at the pier, and return"
    words = S.WORD.findall(test.lower())
    mine = dict(zip(clf.labels, clf.scores(words)))
    theirs = ref.predict_joint_log_proba(vec.transform([" ".join(words)]))[0] - np.log(1 / 3)
    assert mine == pytest.approx(dict(zip(ref.classes_, theirs)), abs=1e-9)
    assert clf.label(words)[0] == ref.predict(vec.transform([test]))[0]


@given(st.lists(st.integers(0, 9), max_size=200), st.integers(1, 40))
def test_segments_cover_the_words_in_order(words, size):
    cuts = S.segments(words, size)
    assert [w for c in cuts for w in c] == words
    assert all(len(c) == size for c in cuts[:-1])
    if len(cuts) > 1:
        assert size / 2 <= len(cuts[-1]) < 1.5 * size


@given(st.text(max_size=300))
def test_a_text_is_all_words_of_its_own_dictionary(text):
    share = S.word_share(text, S.corpus_words(text))
    assert share == (1.0 if S.WORD.search(text.lower()) else 0.0)


def test_switches_need_two_confident_segments():
    clf = S.GenreClassifier(DOCS)
    soup, boat = "stir the soup and taste the bread " * 3, "the boat left the pier at dawn " * 3
    assert S.genres(clf, soup + boat, size=21, margin=5)["switch"]
    assert not S.genres(clf, soup + soup, size=21, margin=5)["switch"]
    assert not S.genres(clf, soup + boat, size=21, margin=1e6)["switch"]  # nothing that sure
    assert S.genres(clf, soup + boat, size=21)["labels"] == ["kitchen", "harbour"]


@pytest.mark.parametrize("call, message", [
    (lambda: S.mix_documents(0), "versions 1 and 2"),
    (lambda: S.GenreClassifier({"a": ["x"]}), "two or more labels"),
    (lambda: S.segments([1, 2], 2.5), "whole number of words"),
    (lambda: S.genres(S.GenreClassifier(DOCS), None), "not a NoneType"),
])
def test_bad_input_is_one_line(call, message):
    with pytest.raises(S.SampleJudgeError, match=message) as e:
        call()
    assert "\n" not in str(e.value)


def _script():
    spec = importlib.util.spec_from_file_location("judge_samples", ROOT / "scripts" / "judge_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_judges_a_run_and_writes_json(tmp_path, monkeypatch, capsys):
    script = _script()
    monkeypatch.setattr(script, "mix_documents", lambda version: {
        k: {"train": v, "val": []} for k, v in DOCS.items()})
    out = tmp_path / "judged.json"
    args = [str(MODEL), "--n", "3", "--tokens", "8", "--prompts", "The ", "def", "--out", str(out)]
    assert script.main([*args, "--threads", "1"]) == 0
    judged = json.loads(out.read_text())
    assert [s["prompt"] for s in judged["samples"]] == ["The ", "def", "The "]
    assert judged["summary"]["n"] == 3 and 0 <= judged["summary"]["words"] <= 1
    assert "dictionary words (goal >= 96%)" in capsys.readouterr().out
    again = tmp_path / "again.json"
    script.main([*args[:-1], str(again), "--threads", "1"])
    assert json.loads(again.read_text())["samples"] == judged["samples"]  # fixed seeds


def test_script_bad_input_is_one_line(monkeypatch, capsys):
    script = _script()
    monkeypatch.setattr(script, "mix_documents", lambda version: {
        k: {"train": v, "val": []} for k, v in DOCS.items()})
    assert script.main([str(MODEL), "--n", "0", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "n must be a whole number" in err
