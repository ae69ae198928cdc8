"""The CPU speedrun's ladder (chapter 5k): its configs, its recorded results and its best run."""
import json
from pathlib import Path

import pytest

from conftest import run_cli
from llm_zero.train import config_to_dict, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "speedrun"
RUNGS = sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem != "best")
# The sections each rung's one change may touch, read from its first comment line.
SECTIONS = {"01-threads": {"train"}, "02-batch": {"train"}, "03-muon": {"optimizer"},
            "04-muon-float32": {"optimizer"}, "05-llama3": {"model"}, "06-qwen3": {"model"},
            "07-schedule": {"optimizer", "schedule"}, "08-shorter": {"train"},
            "09-narrow-mlp": {"model"}, "10-ns-steps": {"optimizer"}, "11-fewer-steps": {"train"},
            "12-bf16": {"train"}, "13-compile": {"train"}, "14-one-thread": {"train"}}


def base_of(rung: str) -> str:
    "The rung that `rung` changes, as its config's second comment line names it."
    line = (CONFIGS / f"{rung}.yaml").read_text().splitlines()[1]
    assert line.startswith("# Differs from ") and line.endswith(".yaml only in that change."), line
    return line.removeprefix("# Differs from ").split(".yaml")[0]


# The kept ladder ends at the rung best.yaml names; the side rungs after it are not kept.
BEST = (CONFIGS / "best.yaml").read_text().splitlines()[0].split(": ")[1].split(",")[0]
LADDER, SIDE = RUNGS[:RUNGS.index(BEST) + 1], RUNGS[RUNGS.index(BEST) + 1:]


def flat(name: str) -> dict:
    "The config `name` as {'section.key': value}, defaults filled in, without the run's name."
    d = config_to_dict(load_config(CONFIGS / f"{name}.yaml"))
    return {f"{s}.{k}": v for s, keys in d.items() for k, v in keys.items() if (s, k) != ("run", "name")}


def changed(a: str, b: str) -> set[str]:
    fa, fb = flat(a), flat(b)
    return {k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k)}


def test_the_ladder_is_complete():
    assert len(LADDER) >= 10 and all(base_of(r) == p for p, r in zip(LADDER, LADDER[1:]))
    assert SIDE and all(base_of(r) == BEST for r in SIDE)
    assert set(SECTIONS) == set(RUNGS) - {LADDER[0]}


@pytest.mark.parametrize("rung", RUNGS[1:])
def test_each_rung_changes_one_thing(rung):
    before = base_of(rung)
    diff = changed(before, rung)
    assert diff, f"{rung} is the same run as {before}"
    assert {k.split(".")[0] for k in diff} <= SECTIONS[rung], \
        f"{rung} changes {sorted(diff)}, outside its comment's {sorted(SECTIONS[rung])}"
    first = (CONFIGS / f"{rung}.yaml").read_text().splitlines()[0]
    assert first.startswith(f"# CPU speedrun, rung {rung} (chapter 5k): ")


def test_best_is_the_last_rung():
    assert changed(LADDER[-1], "best") == set()
    assert load_config(CONFIGS / "best.yaml").run.name != load_config(CONFIGS / f"{LADDER[-1]}.yaml").run.name


def test_ladder_json_covers_every_config():
    ladder = json.loads((ROOT / "experiments" / "speedrun" / "ladder.json").read_text())
    assert set(ladder["rungs"]) == set(RUNGS)
    assert len(ladder["nanogpt"]) == len(ladder["best"]) >= 3
    for res in [*ladder["rungs"].values(), *ladder["nanogpt"], *ladder["best"]]:
        assert res["curve"][-1][2] == res["val_loss"] and res["curve"][-1][0] <= res["wall_s"]
    for rung in RUNGS:
        assert (ROOT / "experiments" / "speedrun" / rung / "metrics.jsonl").is_file(), rung


def test_best_trains_end_to_end(tmp_path):
    # one thread, as every test: the config's two would only fight the other pytest worker
    code, out, err = run_cli("train", "--config", CONFIGS / "best.yaml", "--out", tmp_path / "run", "--quiet",
                             "train.max_steps=5", "train.eval_interval=5", "schedule.warmup_steps=2",
                             "train.threads=1")
    assert code == 0, err
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in records if "val_loss" in r]
    assert len(val) == 1 and 0 < val[0] < 4.5  # ln(65) = 4.17: an untrained character model
    assert load_config(tmp_path / "run" / "config.yaml").model.arch == "qwen3"
