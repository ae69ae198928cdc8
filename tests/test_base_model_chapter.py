"""The committed base-model run (chapter 5l, issue 12) and its size sweep, checked file against file:
the metrics against the config, the samples against the evaluations, the export against its digests
and the run's last evaluation. Cheap checks only: the validation loss of the decompressed weights is
recomputed by the chapter itself (nbs/05l_base_model.ipynb), which nbdev_test executes."""
import csv
import json
import math

import pytest
import yaml

from llm_zero.train.checkpoint import BASE_MODEL, EXPERIMENTS, read_meta, verify_checksums
from llm_zero.train.tokenizers import load_tokenizer

BASE, SWEEP = EXPERIMENTS / BASE_MODEL, EXPERIMENTS / "base-cpu-sweep"
needs_base = pytest.mark.skipif(not (BASE / "metrics.jsonl").is_file(),
                                reason=f"{BASE} is not committed yet (issue 12: the base-model pretraining)")


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def cfg():
    return yaml.safe_load((BASE / "config.yaml").read_text())


@needs_base
def test_the_metrics_follow_the_config(cfg):
    t, rows = cfg["train"], records(BASE)
    tokens_per_step = t["batch_size"] * t.get("grad_accum", 1) * cfg["model"]["context_length"]
    assert all(r["tokens"] == r["step"] * tokens_per_step for r in rows)
    steps = [r["step"] for r in rows if "train_loss" in r]
    assert steps == sorted(steps) and steps[-1] == t["max_steps"]
    evals = [r["step"] for r in rows if "val_loss" in r]
    want = list(range(t["eval_interval"], t["max_steps"] + 1, t["eval_interval"]))
    assert evals == want + ([t["max_steps"]] if want[-1] != t["max_steps"] else [])
    assert all(math.isfinite(r[k]) for r in rows for k in ("train_loss", "val_loss") if k in r)
    assert [r["elapsed_s"] for r in rows] == sorted(r["elapsed_s"] for r in rows)
    assert rows[-1]["elapsed_s"] <= 3600, "the issue's budget: at most an hour of wall time"


@needs_base
def test_the_csv_is_the_jsonl(cfg):
    rows = records(BASE)
    with open(BASE / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    for r, row in zip(rows, table):
        for k, v in r.items():
            if k in row: assert float(row[k]) == pytest.approx(v, rel=1e-9, abs=1e-12), (r["step"], k)


@needs_base
def test_a_sample_before_training_and_after_every_evaluation():
    text = (BASE / "samples.txt").read_text(encoding="utf-8")
    steps = [int(block.split(" ===", 1)[0]) for block in text.split("=== step ")[1:]]
    assert steps == [0] + [r["step"] for r in records(BASE) if "val_loss" in r]


@needs_base
def test_the_export_is_the_last_evaluation_with_the_run_tokenizer(cfg):
    verify_checksums(BASE)  # raises, naming the file, on any mismatch
    listed = {line.split()[1] for line in (BASE / "SHA256SUMS").read_text().splitlines()}
    assert {"model.safetensors", "meta.json", "tokenizer.json", "bpe.txt"} <= listed
    meta, last = read_meta(BASE), [r for r in records(BASE) if "val_loss" in r][-1]
    assert (meta["step"], meta["val_loss"], meta["weights_dtype"]) == (last["step"], last["val_loss"], "bfloat16")
    assert {k: meta["model"][k] for k in cfg["model"]} == cfg["model"]
    tok = load_tokenizer(BASE)
    assert tok.kind == "bpe" and tok.vocab_size == meta["model"]["vocab_size"] == cfg["data"]["bpe_vocab_size"]


@pytest.mark.skipif(not SWEEP.is_dir(), reason="the size sweep is not committed")
def test_the_sweep_gave_every_size_the_same_budget():
    results = {d.name: json.loads((d / "result.json").read_text()) for d in SWEEP.iterdir()
               if (d / "result.json").is_file()}
    assert len(results) >= 3
    walls = [r["wall_s"] for r in results.values()]
    assert max(walls) / min(walls) < 1.25, walls  # the step-time probe misses by a few percent
    for name, r in results.items():
        rows = records(SWEEP / name)
        evals = [x for x in rows if "val_loss" in x]
        assert r["steps"] == rows[-1]["step"] and r["val_loss"] == evals[-1]["val_loss"], name
        assert r["curve"] == [[x["elapsed_s"], x["step"], x["val_loss"]] for x in evals], name


@needs_base
def test_a_rerun_repeats_the_first_steps(cfg, tmp_path):
    # The first STEPS steps, re-run with the run's seed, tokenizer and batches (batches are a function
    # of run.seed and the step). They lie in the warm-up, where the rate is step * peak / warmup_steps;
    # a run of STEPS steps that warms up over all of them, with both peak rates scaled by
    # STEPS / warmup_steps, has the same rates. (`resume` of a folder with no checkpoint reuses its
    # tokenizer.) Its data are english-mix version 1, which needs Tiny Shakespeare (chapter 5i).
    import shutil

    from llm_zero.train import load_config, train
    STEPS, o = 20, cfg["optimizer"]
    k = STEPS / cfg["schedule"]["warmup_steps"]
    assert k <= 1
    for f in ("config.yaml", "tokenizer.json", "bpe.txt"): shutil.copy(BASE / f, tmp_path / f)
    short = load_config(BASE / "config.yaml", [
        "data.corpus=english-mix-v1",
        f"train.max_steps={STEPS}", f"schedule.warmup_steps={STEPS}", f"optimizer.lr={o['lr'] * k!r}",
        f"optimizer.muon_lr={o['muon_lr'] * k!r}", "train.eval_batches=1", "run.sample_tokens=0",
        f"run.checkpoint_interval={STEPS}"])
    train(short, tmp_path, resume=True, progress=False, echo=lambda msg: None)
    again = {r["step"]: r for r in records(tmp_path) if "train_loss" in r}
    committed = {r["step"]: r for r in records(BASE) if r["step"] in again and "train_loss" in r}
    assert len(committed) >= 2
    for step, r in committed.items():
        assert again[step]["lr"] == pytest.approx(r["lr"], rel=1e-12), step
        # exact on the machine that trained it; other CPUs may round sums differently
        assert abs(again[step]["train_loss"] - r["train_loss"]) < 0.02, (step, again[step], r)
