"The on-policy pair rule of chapter 7c (`data.pairs=sampled`) inside `finetune_dpo`: sampling, the rule, the record."
import contextlib
import io
import json
import shutil

import pytest
from conftest import tiny_instruct_run
import torch

from llm_zero.cli import main
from llm_zero.data.dataset import instruction_splits
from llm_zero.eval.report import generate_answers, judge_score
from llm_zero.finetune import dpo
from llm_zero.finetune.dpo import DPOConfig, finetune_dpo, pairs_made_from, sample_answers
from llm_zero.train.checkpoint import load_language_model
from llm_zero.train.config import load_config

SMALL = ["data.limit=48", "data.max_pairs=8", "train.epochs=1", "train.lr=1e-4", "train.eval_freq=2",
         "train.eval_iter=1", "data.max_new_tokens=8", "generate.max_new_tokens=8", "generate.test_limit=2"]
SAMPLED = ["data.pairs=sampled", "data.samples=2", "data.temperature=0.8", "data.margin=0.2"]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    torch.set_num_threads(1)
    return tiny_instruct_run(tmp_path_factory.mktemp("sft"), 48)


def test_sample_answers_greedy_first_then_seeded_samples(sft_run):
    model, tok, _ = load_language_model(sft_run)
    records = instruction_splits(None, 48)[0][:3]
    got = sample_answers(model, records, tok, 2, 1.0, max_new_tokens=6, seed=1)
    assert [len(c) for c in got] == [3, 3, 3]
    assert [c[0] for c in got] == generate_answers(model, records, tok, 6)
    assert all(a["instruction"] == r["instruction"] for c, r in zip(got, records) for a in c)
    assert got == sample_answers(model, records, tok, 2, 1.0, max_new_tokens=6, seed=1)
    other = sample_answers(model, records, tok, 2, 1.0, max_new_tokens=6, seed=2)
    assert [c[1:] for c in other] != [c[1:] for c in got]


@pytest.fixture(scope="module")
def sampled_run(sft_run, tmp_path_factory):
    """A sampled-rule run. The tiny model's answers all score 0 (blank, or no end-of-text in 8 tokens),
    so every record also gets its reference as one more candidate: the rule then has pairs to make."""
    calls = []

    def with_reference(model, records, tok, samples, temperature, max_new_tokens, eos_id, seed):
        calls.append((len(records), samples, temperature, max_new_tokens, seed))
        made = sample_answers(model, records, tok, samples, temperature, max_new_tokens, eos_id, seed)
        return [c + [{**c[0], "model_response": c[0]["output"], "stopped": True}] for c in made]

    out = tmp_path_factory.mktemp("dpo")
    cfg = load_config(None, [f"model.sft={sft_run}", *SMALL, *SAMPLED], DPOConfig)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dpo, "sample_answers", with_reference)
        scores = finetune_dpo(cfg, out, progress=False)
    return out, cfg, scores, calls


def test_sampled_rule_makes_and_records_the_pairs(sampled_run):
    out, cfg, scores, calls = sampled_run
    train, val, _ = instruction_splits(None, 48)
    # the config's settings reach the sampler, for the training and the validation records
    assert calls == [(len(train), 2, 0.8, 8, cfg.train.seed), (len(val), 2, 0.8, 8, cfg.train.seed)]
    pairs = json.loads((out / "pairs.json").read_text())
    assert pairs["made_from"] == {**pairs_made_from(load_config(None, [f"model.sft={cfg.model.sft}", *SMALL],
                                                                DPOConfig)),
                                  "data.pairs": "sampled", "data.samples": 2, "data.temperature": 0.8,
                                  "data.margin": 0.2, "train.seed": cfg.train.seed}
    reference = {(r["instruction"], r["input"]): r["output"] for r in train + val}
    for split in ("train", "validation"):
        assert pairs[split], split
        for p in pairs[split]:
            ref = reference[(p["instruction"], p["input"])]
            assert p["chosen_score"] == judge_score(p["chosen"], ref)
            assert p["chosen_score"] - p["rejected_score"] >= 0.2
    assert scores["pairs"] == {"train": min(8, len(pairs["train"])), "validation": len(pairs["validation"])}
    assert scores["step"] > 0 and (out / "scores.json").is_file()


def _refused(sft, out, message, *extra):
    "`finetune dpo` into `out` exits 2 with one line naming `message`."
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["finetune", "dpo", "--quiet", "--out", str(out), f"model.sft={sft}", *SMALL, *extra])
    assert code == 2 and message in err.getvalue(), err.getvalue()
    assert len(err.getvalue().strip().splitlines()) == 1 and "Traceback" not in err.getvalue()


def test_pairs_of_another_rule_or_setting_are_not_reused(sampled_run, tmp_path):
    out, cfg, _, _ = sampled_run
    for extra, differ in (([], "data.pairs"), ([*SAMPLED, "data.samples=3"], "data.samples"),
                          ([*SAMPLED, "train.seed=7"], "train.seed")):
        run = tmp_path / differ
        run.mkdir()
        shutil.copy(out / "pairs.json", run / "pairs.json")
        _refused(cfg.model.sft, run, f"was made with another {differ}", *extra)


def test_reference_rule_records_what_it_always_did(sft_run):
    "The default rule's pairs.json record has the keys it had before the sampled rule, so old files stay valid."
    cfg = load_config(None, [f"model.sft={sft_run}"], DPOConfig)
    assert cfg.data.pairs == "reference"
    assert set(pairs_made_from(cfg)) == {"sft_weights_sha256", "data.path", "data.limit", "data.max_new_tokens"}


@pytest.mark.parametrize("bad, message", [("data.pairs=best", "data.pairs must be reference or sampled"),
                                          ("data.margin=-1", "data.margin must be positive")])
def test_bad_rule_settings_are_one_line(sft_run, tmp_path, bad, message):
    _refused(sft_run, tmp_path / "run", message, bad)
