"""The offline evaluation report (chapter 7d): ROUGE-L against `rouge-score`, the same report for the same
checkpoint, classifier numbers equal to fine-tuning's own, corpora a tokenizer cannot encode skipped, `llm-zero report`."""
import contextlib
import functools
import io

import pytest
from conftest import tiny_instruct_run
from hypothesis import given, settings, strategies as st

from llm_zero.finetune.cli import ClassifyConfig, finetune_classify
from llm_zero.train.config import load_config
from llm_zero.train.checkpoint import load_classifier
from llm_zero.eval.report import evaluate_run, rouge_l, write_report

TINY_LM = """
model: {context_length: 32, emb_dim: 32, n_heads: 2, n_layers: 1}
data: {corpus: the-verdict, tokenizer: char}
schedule: {warmup_steps: 2}
train: {max_steps: 10, batch_size: 8, eval_interval: 0, eval_batches: 2}
run: {log_interval: 5, checkpoint_interval: 10, sample_tokens: 5, sample_prompt: "I had "}
"""


@functools.cache
def scorer():
    """rouge-score's ROUGE-L (imported here: with NLTK it costs ~2 s, paid only by the pytest
    worker that runs this module)."""
    from rouge_score import rouge_scorer
    return rouge_scorer.RougeScorer(["rougeL"])


text = st.lists(st.sampled_from(["the", "The", "cat", "sat", "on", "a", "mat", "42", "dog,", "é", "--", "!"]),
                max_size=12).map(" ".join)


@settings(max_examples=500, deadline=None)
@given(text, text)
def test_rouge_l_equals_rouge_score(prediction, reference):
    expected = scorer().score(reference, prediction)["rougeL"].fmeasure
    assert rouge_l(prediction, reference) == pytest.approx(expected, abs=1e-12)


def cli(*args):
    from llm_zero.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([str(a) for a in args]) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def instruct_run(tmp_path_factory):
    return tiny_instruct_run(tmp_path_factory.mktemp("instruct"), 60)


def test_same_checkpoint_same_report(instruct_run):
    r = write_report(instruct_run, max_tokens=500, test_limit=3, n_tasks=3)
    first = {n: (instruct_run / n).read_bytes() for n in ("report.md", "report.png")}
    write_report(instruct_run, max_tokens=500, test_limit=3, n_tasks=3)
    assert {n: (instruct_run / n).read_bytes() for n in first} == first
    s = r["instruction"]
    assert s["n"] == 3 and set(s["tasks"]) == {"copy", "count", "add"}
    assert 0 <= s["format_adherence"] <= 1 and s["format_adherence"] == 1 - s["failure_rate"]["any"]
    assert all(0 < b["bits_per_byte"] < 20 for b in r["bits_per_byte"].values() if "skipped" not in b)
    assert "bits_per_byte" in r["bits_per_byte"]["the-verdict"]
    assert "## Generated tasks" in first["report.md"].decode()


@pytest.mark.parametrize("readout", ["last", "mean"])
def test_classifier_numbers_match_finetuning(tmp_path, readout):
    "The report reloads the classifier and reads its outputs as fine-tuning did (`model.readout`)."
    cfg = load_config(None, ["model.base=tiny-gpt", "data.limit=60", "train.epochs=1", "train.eval_freq=100",
                             f"model.readout={readout}"], ClassifyConfig)
    metrics = finetune_classify(cfg, tmp_path, progress=False)
    model, tok, _ = load_classifier(tmp_path)
    assert model.readout == (readout, tok.pad_id)
    c = evaluate_run(tmp_path)["classifier"]
    assert sum(map(sum, c["confusion"])) == c["n"] == 60 - int(60 * 0.7) - int(60 * 0.1)
    assert c["accuracy"] == pytest.approx(metrics["accuracy"]["test"], abs=1e-12)


def test_language_model_corpora_and_cli(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_LM)
    cli("train", "--config", tmp_path / "tiny.yaml", "--out", tmp_path / "run", "--quiet")
    printed = cli("report", tmp_path / "run", "--max-tokens", 300)
    r = evaluate_run(tmp_path / "run", max_tokens=300)
    assert r["task"] == "pretrain" and "instruction" not in r
    assert "bits_per_byte" in r["bits_per_byte"]["the-verdict"]  # the corpus its characters come from
    # char vocabularies map unseen characters to <|unk|>, so every corpus in the cache gets a number
    assert all(("bits_per_byte" in b) != ("skipped" in b) for b in r["bits_per_byte"].values())
    assert set(r["bits_per_byte"]) == {"python-docs", "english-mix", "the-verdict", "tinyshakespeare"}
    assert "bits/byte the-verdict" in printed and (tmp_path / "run" / "report.md").is_file()


def _report_refused(run, message):
    from llm_zero.cli import main
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(["report", str(run)]) == 2
    assert message in err.getvalue() and len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_run_config_that_is_not_yaml_is_the_config_loaders_error(instruct_run, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(instruct_run, run)
    (run / "config.yaml").write_text("data: {limit: [\n")
    _report_refused(run, f"Config file {run / 'config.yaml'} is not valid YAML: while parsing")


def test_a_classifier_without_its_config_is_refused(tmp_path):
    cfg = load_config(None, ["model.base=tiny-gpt", "data.limit=20", "train.epochs=1", "train.eval_freq=100"],
                      ClassifyConfig)
    finetune_classify(cfg, tmp_path / "cls", progress=False)
    (tmp_path / "cls" / "config.yaml").unlink()
    _report_refused(tmp_path / "cls", "has no config.yaml with a data section, so its test split cannot be rebuilt")
