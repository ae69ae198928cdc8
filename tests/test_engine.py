"""The training engine: config validation and overrides, step-indexed data, the loop's safety
behaviour, checkpoints of the wrong architecture, and the bad-input errors of issue 5."""
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from llm_zero.data.corpora import cache_dir
from llm_zero.train.checkpoint import CheckpointError, find_checkpoint
from llm_zero.train.config import ConfigError, Config, apply_overrides, config_from_dict, config_to_dict, load_config
from llm_zero.train.data import TokenWindows
from llm_zero.train.engine import (TrainingDiverged, build_model, configure_optimizer, load_model_from_checkpoint,
                                   train)
from llm_zero.train.evaluate import evaluate_text

torch.set_num_threads(1)  # tiny models: one thread is fastest

TINY = {"model": {"context_length": 16, "emb_dim": 32, "n_heads": 2, "n_layers": 1},
        "data": {"corpus": "the-verdict", "tokenizer": "char"},
        "optimizer": {"lr": 3e-3}, "schedule": {"warmup_steps": 2, "min_lr": 3e-4},
        "train": {"max_steps": 30, "batch_size": 8, "eval_interval": 15, "eval_batches": 4},
        "run": {"log_interval": 5, "checkpoint_interval": 10, "sample_tokens": 0}}


def tiny(**sections):
    d = json.loads(json.dumps(TINY))
    for sec, values in sections.items(): d.setdefault(sec, {}).update(values)
    return config_from_dict(d)


# ---- config -------------------------------------------------------------------------------------

SECTIONS = {f.name: [g.name for g in dataclasses.fields(f.default_factory)] for f in dataclasses.fields(Config)}


@given(st.sampled_from(sorted(SECTIONS)), st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
@settings(max_examples=60, deadline=None)
def test_unknown_key_lists_the_valid_ones(section, key):
    if key in SECTIONS[section]: return
    with pytest.raises(ConfigError) as e:
        config_from_dict({section: {key: 1}})
    assert f"Unknown key {section}.{key}" in str(e.value)
    assert all(k in str(e.value) for k in SECTIONS[section])


@given(st.integers(1, 10**6), st.floats(1e-6, 1.0), st.booleans())
@settings(max_examples=40, deadline=None)
def test_overrides_are_typed_like_yaml(steps, lr, bf16):
    c = config_from_dict(apply_overrides({}, [f"train.max_steps={steps}", f"optimizer.lr={lr!r}",
                                              f"train.bf16={str(bf16).lower()}", "schedule.warmup_steps=0",
                                              "schedule.min_lr=0"]))
    assert (c.train.max_steps, c.optimizer.lr, c.train.bf16) == (steps, lr, bf16)


def test_pretraining_configs_are_valid():
    for name in ("default", "shakespeare_char"):
        f = Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml"
        c = load_config(f)
        assert config_from_dict(config_to_dict(c)) == c, f


def test_bad_values_name_the_key():
    for d, msg in [({"model": {"n_heads": 0}}, "model section: GPT config key 'n_heads' must be a positive integer"),
                   ({"model": {"drop_rate": 1.0}}, "model section: GPT config key 'drop_rate' must be a number in [0, 1)"),
                   ({"optimizer": {"lr": "inf"}}, "optimizer.lr must be a finite number"),
                   ({"data": {"val_fraction": 0}}, "data.val_fraction"),
                   ({"schedule": {"min_lr": 1.0}}, "schedule.min_lr must be between 0 and optimizer.lr"),
                   ({"run": {"sample_top_p": 0}}, "run.sample_top_p must be in (0, 1]"),
                   ({"train": {"batch_size": 2.5}}, "train.batch_size expects int")]:
        with pytest.raises(ConfigError, match=None) as e: config_from_dict(d)
        assert msg in str(e.value), (msg, str(e.value))


# ---- data ---------------------------------------------------------------------------------------

@given(seed=st.integers(0, 2**31), step=st.integers(0, 10**6), micro=st.integers(0, 7),
       world=st.sampled_from([1, 2, 4]), sampling=st.sampled_from(["random", "sliding"]))
@settings(max_examples=50, deadline=None)
def test_process_shards_partition_the_global_batch(seed, step, micro, world, sampling):
    ids = np.arange(500, dtype=np.uint16)  # token i is i: the inputs reveal the window starts
    w = TokenWindows(ids, 10, sampling=sampling, stride=7, seed=seed)
    x, y = w.batch(step, micro, 8, grad_accum=8)
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y[:, -1], x[:, -1] + 1)
    shards = [w.batch(step, micro, 8, 8, rank=r, world_size=world)[0] for r in range(world)]
    assert torch.equal(torch.cat(shards), x)
    if sampling == "sliding": assert (x[:, 0] % 7 == 0).all()


def test_sliding_epochs_visit_every_window_once():
    w = TokenWindows(np.arange(1001), 10, sampling="sliding", stride=10, seed=3)
    assert w.n_windows == 100
    per_epoch = w.n_windows // 4
    for epoch in range(2):
        starts = torch.cat([w.batch(s, 0, 4)[0][:, 0] for s in range(epoch * per_epoch, (epoch + 1) * per_epoch)])
        assert sorted(starts.tolist()) == list(range(0, 1000, 10))


def test_a_run_reads_its_corpus_ids_from_the_cache(monkeypatch):
    "Asked again for a corpus it has tokenized with the same tokenizer, a run tokenizes nothing."
    import llm_zero.train.data as data_module
    import llm_zero.train.engine as engine_module
    import llm_zero.train.evaluate as evaluate_module
    first = engine_module.load_run_data(tiny())

    def tokenize(*args, **kwargs): raise AssertionError("the corpus was tokenized again")
    for module in (data_module, engine_module, evaluate_module):
        monkeypatch.setattr(module, "encode_corpus", tokenize, raising=False)
    again = engine_module.load_run_data(tiny())
    assert np.array_equal(again.train.ids, first.train.ids) and np.array_equal(again.val.ids, first.val.ids)


def test_a_cache_it_cannot_write_only_costs_the_tokenizing(monkeypatch, tmp_path):
    "A read-only cache (here its tokens folder is a file) must not stop a run that used to work."
    import llm_zero.train.engine as engine_module
    (tmp_path / "the-verdict.txt").symlink_to(cache_dir() / "the-verdict.txt")
    monkeypatch.setenv("LLM_ZERO_CACHE", str(tmp_path))
    (tmp_path / "tokens").write_text("not a folder")
    first = engine_module.load_run_data(tiny())
    again = engine_module.load_run_data(tiny())
    assert np.array_equal(again.train.ids, first.train.ids) and len(first.val.ids) > 0
    assert (tmp_path / "tokens").read_text() == "not a folder"


# ---- loop ---------------------------------------------------------------------------------------

def test_training_learns_and_fills_the_run_folder(tmp_path):
    s = train(tiny(), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for f in ("config.yaml", "tokenizer.json", "metrics.jsonl", "metrics.csv", "loss.png"):
        assert (run / f).is_file(), f
    recs = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["train_loss"] for r in recs if "train_loss" in r]
    vocab = load_model_from_checkpoint(run)[0].cfg["vocab_size"]
    assert train_losses[0] < math.log(vocab) + 0.5 and s["val_loss"] < math.log(vocab) - 0.8
    assert (run / "metrics.csv").read_text().count("\n") == len(recs) + 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best", "step-00000020", "step-00000030"]
    assert load_config(run / "config.yaml").model.vocab_size == vocab
    assert load_model_from_checkpoint(run)[2]["step"] == 30


def test_weight_decay_only_on_matrices():
    m = build_model({"vocab_size": 20, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 1,
                     "drop_rate": 0.0, "qkv_bias": True})
    opt = configure_optimizer(m, tiny().optimizer)
    names = {id(p): n for n, p in m.named_parameters()}
    decayed = {names[id(p)] for p in opt.param_groups[0]["params"]}
    plain = {names[id(p)] for p in opt.param_groups[1]["params"]}
    assert opt.param_groups[1]["weight_decay"] == 0 and opt.param_groups[0]["weight_decay"] == 0.1
    assert "tok_emb.weight" in decayed and "out_head.weight" in decayed
    assert all(n.endswith(("bias", "scale", "shift")) for n in plain) and any("W_query.bias" in n or "qkv" in n for n in plain)


def test_fast_path_trains_like_the_reference_path_with_fused_adamw(tmp_path):
    # The fast path computes the loss with the fused head (nbs/05a_fused_loss); with the same seed and
    # batches both paths must follow the same loss curve up to float32 rounding.
    m = build_model({"vocab_size": 20, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 1,
                     "drop_rate": 0.0, "qkv_bias": False})
    assert configure_optimizer(m, tiny().optimizer).defaults["fused"]
    runs = {impl: train(tiny(model={"impl": impl}, train={"max_steps": 12, "eval_interval": 0}),
                        tmp_path / impl, progress=False) for impl in ("reference", "fast")}
    curves = {impl: [r["train_loss"] for r in map(json.loads, (tmp_path / impl / "metrics.jsonl").read_text().splitlines())
                     if "train_loss" in r] for impl in runs}
    assert len(curves["fast"]) == 12 // TINY["run"]["log_interval"] + 1, curves
    np.testing.assert_allclose(curves["fast"], curves["reference"], rtol=1e-4)
    assert abs(runs["fast"]["val_loss"] - runs["reference"]["val_loss"]) < 1e-4


def test_bf16_autocast_trains_close_to_float32(tmp_path):
    a = train(tiny(train={"max_steps": 15, "eval_interval": 0}), tmp_path / "f32", progress=False)
    b = train(tiny(train={"max_steps": 15, "eval_interval": 0, "bf16": True}), tmp_path / "bf16", progress=False)
    assert abs(a["val_loss"] - b["val_loss"]) < 0.1, (a["val_loss"], b["val_loss"])


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    train(tiny(train={"max_steps": 10}), run, progress=False)
    good = sorted(p.name for p in (run / "checkpoints").iterdir())
    # Continue the same run with an absurd learning rate: the weights explode within a few steps.
    cfg = tiny(train={"max_steps": 40}, optimizer={"lr": 1e30, "grad_clip": None},
               schedule={"warmup_steps": 0, "min_lr": 0}, run={"checkpoint_interval": 1000})
    with pytest.raises(TrainingDiverged, match=r"at step \d+") as e:
        train(cfg, run, resume=True, progress=False)
    assert int(str(e.value).split("at step ")[1].split(";")[0]) > 10
    assert "step-00000010, is kept" in str(e.value)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == good


def test_existing_run_is_not_overwritten_and_resume_checks_the_architecture(tmp_path):
    run = tmp_path / "run"
    train(tiny(train={"max_steps": 10}), run, progress=False)
    before = (run / "checkpoints" / "step-00000010" / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(tiny(train={"max_steps": 10}), run, progress=False)
    with pytest.raises(ConfigError, match=r"model.emb_dim was 32 when the run started and is 64 now"):
        train(tiny(model={"emb_dim": 64}), run, resume=True, progress=False)
    assert (run / "checkpoints" / "step-00000010" / "model.safetensors").read_bytes() == before


# ---- bad input ----------------------------------------------------------------------------------

def test_corpus_shorter_than_one_window(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("Too short for a window of 16 characters plus one..."[:20])
    with pytest.raises(ValueError, match="fewer than one window needs"):
        train(tiny(data={"corpus": str(short)}), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_batch_that_does_not_fit_the_corpus(tmp_path):
    text = tmp_path / "small.txt"
    text.write_text("abcdefghij" * 30)
    with pytest.raises(ValueError, match="train.batch_size=64 is larger than the"):
        train(tiny(data={"corpus": str(text), "sampling": "sliding"}, train={"batch_size": 64}), tmp_path / "run", progress=False)


def test_checkpoint_of_another_architecture_names_the_tensor(tmp_path):
    train(tiny(train={"max_steps": 10}), tmp_path / "run", progress=False)
    model, tok, meta = load_model_from_checkpoint(tmp_path / "run")
    wider = build_model({**meta["model"], "emb_dim": 48})
    from llm_zero.train.checkpoint import load_weights
    with pytest.raises(CheckpointError, match=r"Tensor 'tok_emb.weight' .* has shape \[\d+, 32\], but the model expects \[\d+, 48\]"):
        load_weights(wider, find_checkpoint(tmp_path / "run"))
    deeper = build_model({**meta["model"], "n_layers": 2})
    with pytest.raises(CheckpointError, match=r"no tensor 'trf_blocks.1\."):
        load_weights(deeper, find_checkpoint(tmp_path / "run"))


def test_missing_and_corrupt_checkpoints(tmp_path):
    train(tiny(train={"max_steps": 10}), tmp_path / "run", progress=False)
    ck = find_checkpoint(tmp_path / "run")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model_from_checkpoint(tmp_path / "elsewhere")
    (ck / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="is corrupt or truncated"):
        load_model_from_checkpoint(ck)
    (ck / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        load_model_from_checkpoint(ck)
    (ck / "meta.json").write_text("{")
    with pytest.raises(CheckpointError, match="meta.json is corrupt"):
        load_model_from_checkpoint(ck)


def test_eval_matches_the_definition(tmp_path):
    train(tiny(train={"max_steps": 10}), tmp_path / "run", progress=False)
    model, tok, _ = load_model_from_checkpoint(tmp_path / "run")
    from llm_zero.data.corpora import load_text
    text = load_text("the-verdict")[:3000]
    r = evaluate_text(model, tok, text, batch_size=4)
    ids = torch.tensor(tok.encode(text))
    T = model.cfg["context_length"]
    # Recompute directly: every non-overlapping window, mean next-token cross-entropy.
    starts = range(0, len(ids) - T, T)
    with torch.no_grad():
        losses = [torch.nn.functional.cross_entropy(model(ids[s:s + T][None])[0], ids[s + 1:s + T + 1], reduction="sum")
                  for s in starts]
    total = sum(l.item() for l in losses)
    assert r["tokens"] == len(starts) * T
    assert abs(r["loss"] - total / r["tokens"]) < 1e-5
    assert abs(r["perplexity"] - math.exp(r["loss"])) < 1e-6 * r["perplexity"]
    assert abs(r["bits_per_byte"] - total / (math.log(2) * r["bytes"])) < 1e-5
