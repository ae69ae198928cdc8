"""`optimizer.name: muon` in the engine: Muon on the hidden matrices, AdamW on the rest, each group
scheduled from its own peak rate, exact resumption, and a clear refusal to switch optimisers."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from llm_zero.train.checkpoint import STATE_FILE
from llm_zero.train.config import ConfigError, config_from_dict
from llm_zero.train.engine import build_model, configure_optimizer, train
from llm_zero.train.muon import Muon, MuonWithAdamW
from llm_zero.train.schedule import lr_schedule

torch.set_num_threads(1)  # tiny models: one thread is fastest, and the bits do not depend on it

STEPS, LR, MUON_LR = 30, 3e-3, 0.02
MUON = {"model": {"context_length": 16, "emb_dim": 32, "n_heads": 2, "n_layers": 2, "drop_rate": 0.1},
        "data": {"corpus": "the-verdict", "tokenizer": "char"},
        "optimizer": {"name": "muon", "lr": LR, "muon_lr": MUON_LR},
        "schedule": {"warmup_steps": 15, "min_lr": 3e-4},
        "train": {"max_steps": STEPS, "batch_size": 8, "grad_accum": 2, "eval_interval": 30, "eval_batches": 4},
        "run": {"log_interval": 1, "checkpoint_interval": 10, "keep_last": 3, "sample_tokens": 0}}


def cfg(**sections):
    d = json.loads(json.dumps(MUON))
    for sec, values in sections.items(): d[sec].update(values)
    return config_from_dict(d)


@pytest.fixture(scope="module")
def muon_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("muon") / "run"
    return run, train(cfg(), run, progress=False)


def test_muon_splits_the_model_and_stamps_each_groups_peak():
    m = build_model({"vocab_size": 20, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 1,
                     "drop_rate": 0.0, "qkv_bias": True})
    opt = configure_optimizer(m, cfg().optimizer)
    assert isinstance(opt, MuonWithAdamW) and isinstance(opt.muon, Muon)
    names = {id(p): n for n, p in m.named_parameters()}
    muon = {names[id(p)] for g in opt.muon.param_groups for p in g["params"]}
    assert muon and all(names[id(p)] not in muon for g in opt.adamw.param_groups for p in g["params"])
    assert all(m.get_submodule(n.rsplit(".", 1)[0]).__class__ is torch.nn.Linear for n in muon)
    assert "out_head.weight" not in muon and "tok_emb.weight" not in muon
    assert [g["initial_lr"] for g in opt.param_groups] == [MUON_LR] + [LR] * len(opt.adamw.param_groups)
    adamw = configure_optimizer(m, cfg(optimizer={"name": "adamw"}).optimizer)
    assert isinstance(adamw, torch.optim.AdamW) and [g["initial_lr"] for g in adamw.param_groups] == [LR, LR]


def test_muon_trains_and_every_group_follows_the_schedule(muon_run):
    run, summary = muon_run
    recs = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in recs if "train_loss" in r]
    assert len(losses) == STEPS and summary["val_loss"] < losses[0] - 0.8, (losses[0], summary["val_loss"])
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.8
    for done in (10, 20, 30):  # checkpoint `done` holds the rates of step done - 1 (steps count from 0)
        state = torch.load(run / "checkpoints" / f"step-{done:08d}" / STATE_FILE, weights_only=True)
        lr = lr_schedule(done - 1, STEPS, 15, LR, 3e-4)
        assert [r["lr"] for r in recs if r["step"] == done and "lr" in r] == [lr]
        assert state["optimizer"]["muon"]["param_groups"][0]["lr"] == pytest.approx(MUON_LR * lr / LR, rel=1e-12)
        assert [g["lr"] for g in state["optimizer"]["adamw"]["param_groups"]] == [lr, lr]  # to the bit


def test_resume_is_bit_identical(muon_run, tmp_path):
    ref, _ = muon_run
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    for later in ("step-00000020", "step-00000030", "best"):
        shutil.rmtree(run / "checkpoints" / later, ignore_errors=True)
    train(cfg(), run, resume=True, progress=False)
    a = load_file(ref / "checkpoints" / f"step-{STEPS:08d}" / "model.safetensors")
    b = load_file(run / "checkpoints" / f"step-{STEPS:08d}" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_another_optimizer(muon_run, tmp_path):
    ref, _ = muon_run
    before = (ref / "checkpoints" / f"step-{STEPS:08d}" / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match=r"trained with optimizer.name=muon and the config now says adamw.*"
                                          r"Set optimizer.name=muon, or start a new run"):
        train(cfg(optimizer={"name": "adamw"}, train={"max_steps": 40}), ref, resume=True, progress=False)
    assert (ref / "checkpoints" / f"step-{STEPS:08d}" / "model.safetensors").read_bytes() == before


def test_bad_optimizer_settings_name_the_key():
    for section, msg in [({"name": "sgd"}, "optimizer.name must be one of 'adamw', 'muon', got 'sgd'"),
                         ({"muon_lr": 0}, "optimizer.muon_lr must be positive"),
                         ({"muon_momentum": 1.0}, "optimizer.muon_momentum must be in [0, 1)"),
                         ({"muon_weight_decay": -1}, "optimizer.muon_weight_decay must be non-negative")]:
        with pytest.raises(ConfigError) as e: cfg(optimizer=section)
        assert msg in str(e.value), str(e.value)


def test_resume_with_a_lower_rate_runs_at_that_rate(tmp_path):
    # The advice after a blow-up is to resume with a lower optimizer.lr: the groups' peaks must be
    # the new config's, not the ones saved with the optimiser state.
    adamw, warmup = {"name": "adamw"}, {"warmup_steps": 5}
    train(cfg(optimizer=adamw, schedule=warmup, train={"max_steps": 10}), tmp_path / "run", progress=False)
    train(cfg(optimizer={**adamw, "lr": LR / 2}, schedule=warmup, train={"max_steps": 20}), tmp_path / "run",
          resume=True, progress=False)
    state = torch.load(tmp_path / "run" / "checkpoints" / "step-00000020" / STATE_FILE, weights_only=True)
    lr = lr_schedule(19, 20, 5, LR / 2, 3e-4)
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [lr, lr]
