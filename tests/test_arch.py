"""`model.arch`: every command of the engine and the command line with every architecture (tiny models,
one thread): train, resume bit for bit, generate, eval, fine-tune (classify, instruct), chat, bf16,
two-process DDP, and GPT-2 checkpoints written before the key existed."""
import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llm_zero.core import InputError
from llm_zero.finetune.cli import add_finetune_commands
from llm_zero.model import GPTModel, Llama3Model, Qwen3Model
from llm_zero.serve.chat import chat_stream
from llm_zero.train.checkpoint import find_checkpoint, load_classifier, load_language_model, read_meta
from llm_zero.train.config import ConfigError, load_config
from llm_zero.train.engine import load_model_from_checkpoint, train

BIN = Path(sys.executable).parent
STEPS = 8
MODELS = {
    "gpt2": ("{arch: gpt2, context_length: 24, emb_dim: 32, n_heads: 2, n_layers: 2}", GPTModel),
    "llama3": ("{arch: llama3, context_length: 24, emb_dim: 32, n_heads: 4, n_layers: 2, "
               "hidden_dim: 64, n_kv_groups: 2, rope_base: 10000.0}", Llama3Model),
    "qwen3": ("{arch: qwen3, context_length: 24, emb_dim: 32, n_heads: 4, n_layers: 2, "
              "hidden_dim: 64, n_kv_groups: 2, rope_base: 10000.0, head_dim: 16, "
              "tie_embeddings: true}", Qwen3Model),  # tied: the classifier head must untie it
}


def config(arch, steps=STEPS):
    return f"""
model: {MODELS[arch][0]}
data: {{corpus: the-verdict, tokenizer: bpe, bpe_vocab_size: 300}}
optimizer: {{lr: 3.0e-3}}
schedule: {{warmup_steps: 2, min_lr: 3.0e-4}}
train: {{max_steps: {steps}, batch_size: 8, grad_accum: 2, eval_interval: 4, eval_batches: 2,
        threads: 1}}
run: {{log_interval: 1, checkpoint_interval: 4, keep_last: 3, sample_tokens: 8}}
"""


def main(*args):
    "Run `llm_zero.cli.main` in this process; its stdout."
    from llm_zero.cli import main as entry
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert entry([str(a) for a in args]) == 0
    return out.getvalue()


def finetune(*argv):
    p = argparse.ArgumentParser(prog="llm-zero")
    add_finetune_commands(p.add_subparsers(dest="command", required=True))
    args = p.parse_args([str(a) for a in argv])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert args.func(args) == 0


def weights(run, step):
    return load_file(run / "checkpoints" / f"step-{step:08d}" / "model.safetensors")


@pytest.fixture(scope="module", params=list(MODELS))
def run(request, tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp(request.param)
    (d / "tiny.yaml").write_text(config(request.param))
    train(load_config(d / "tiny.yaml"), d / "run", progress=False)
    return request.param, d


def test_trains_and_records_the_architecture(run):
    arch, d = run
    records = [json.loads(l) for l in (d / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert len(losses) == STEPS and losses[-1] < losses[0]
    meta = read_meta(find_checkpoint(d / "run"))
    assert meta["model"]["arch"] == arch
    model, _, _ = load_model_from_checkpoint(d / "run")  # no flags: the checkpoint names the class
    assert type(model) is MODELS[arch][1]


def test_resume_is_bit_identical(run):
    _, d = run
    out = d / "resumed"
    shutil.copytree(d / "run", out)
    for ck in (out / "checkpoints").iterdir():  # as if the run had died just after step 4
        if ck.name != "step-00000004": shutil.rmtree(ck)
    train(load_config(d / "tiny.yaml"), out, resume=True, progress=False)
    a, b = weights(d / "run", STEPS), weights(out, STEPS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_generate_and_eval(run):
    _, d = run
    greedy = ("generate", "--checkpoint", d / "run", "--prompt", "I had", "--max-tokens", "6",
              "--temperature", "0")
    text = main(*greedy)
    assert text.startswith("I had") and len(text) > len("I had") and text == main(*greedy)
    report = main("eval", "--checkpoint", d / "run", "--corpus", "the-verdict")
    assert "perplexity" in report.lower()


def test_finetune_classify_instruct_and_chat(run):
    arch, d = run
    base = d / "run"
    finetune("finetune", "classify", "--config", "configs/finetune_classify.yaml", "--out", d / "cls",
             "--quiet", f"model.base={base}", "data.limit=40", "train.epochs=1", "train.lr=1e-3",
             "train.eval_freq=3", "lora.rank=2")
    model, _, _ = load_classifier(d / "cls")
    assert type(model) is MODELS[arch][1] and model.out_head.out_features == 2
    finetune("finetune", "instruct", "--config", "configs/finetune_instruct.yaml", "--out", d / "ins",
             "--quiet", f"model.base={base}", "data.limit=16", "train.epochs=1", "train.lr=1e-3",
             "data.mask_instruction=false",  # a 24-token context holds no masked target
             "generate.max_new_tokens=4", "generate.test_limit=2")
    model, tok, _ = load_language_model(d / "ins")
    assert type(model) is MODELS[arch][1]
    responses = json.loads((d / "ins" / "test-responses.json").read_text())
    assert responses and all("model_response" in r for r in responses)
    # A 24-token context cannot hold chapter 7's template: chat refuses in one line rather than
    # cut the template's header (issue 25).
    with pytest.raises(InputError, match="template alone"):
        list(chat_stream(model, tok, "Name a colour.", max_tokens=3))


def test_bf16_step(run):
    "Step 1 sees the same initial weights and batch: bf16 autocast changes its loss only by rounding."
    _, d = run
    cfg = load_config(d / "tiny.yaml", ["train.bf16=true", "train.max_steps=2", "train.eval_interval=0",
                                        "schedule.warmup_steps=1"])
    train(cfg, d / "bf16", progress=False)
    first = [[json.loads(l)["train_loss"] for l in (d / k / "metrics.jsonl").read_text().splitlines()
              if "train_loss" in l][0] for k in ("run", "bf16")]
    assert first[0] != first[1] and abs(first[1] - first[0]) < 0.02 * first[0], first


def test_arch_keys_are_checked_by_the_model():
    with pytest.raises(ConfigError, match="model section: Llama3Model config is missing key 'hidden_d"):
        load_config(None, ["model.arch=llama3"])
    with pytest.raises(ConfigError, match="'n_kv_groups'"):
        load_config(None, ["model.n_kv_groups=2"])                  # a GPT-2 has no kv groups
    with pytest.raises(ConfigError, match="drop_rate.*GPT-2 setting"):
        load_config(None, ["model.arch=qwen3", "model.hidden_dim=8", "model.n_kv_groups=1",
                           "model.rope_base=1e4", "model.drop_rate=0.1"])
    with pytest.raises(ConfigError, match="Unknown model arch 'mistral'"):
        load_config(None, ["model.arch=mistral"])


def test_old_gpt2_checkpoint_still_loads(tmp_path):
    "Written before `arch` (no key) and before the `attn_impl` -> `impl` rename."
    torch.set_num_threads(1)
    (tmp_path / "tiny.yaml").write_text(config("gpt2", steps=2).replace("arch: gpt2, ", ""))
    train(load_config(tmp_path / "tiny.yaml"), tmp_path / "run", progress=False)
    ck = find_checkpoint(tmp_path / "run")
    new, tok, _ = load_model_from_checkpoint(tmp_path / "run")
    meta = json.loads((ck / "meta.json").read_text())
    model = meta["model"]
    model.pop("arch", None)
    model["attn_impl"] = {"fast": "sdpa"}[model.pop("impl")]
    for key in [k for k, v in model.items() if v is None and k != "vocab_size"]: model.pop(key)
    (ck / "meta.json").write_text(json.dumps(meta))
    with pytest.warns(DeprecationWarning, match="attn_impl"):
        old, _, _ = load_model_from_checkpoint(tmp_path / "run")
    assert type(old) is GPTModel and old.cfg["impl"] == "fast"
    ids = torch.tensor([tok.encode("I had always thought")])
    with torch.no_grad(): assert torch.equal(old(ids), new(ids))


def test_two_processes_match_one_for_llama(tmp_path):
    (tmp_path / "tiny.yaml").write_text(config("llama3"))
    torch.set_num_threads(1)
    train(load_config(tmp_path / "tiny.yaml"), tmp_path / "single", progress=False)
    r = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "--no-python",
                        str(BIN / "llm-zero"), "train", "--config", str(tmp_path / "tiny.yaml"),
                        "--out", str(tmp_path / "ddp"), "--quiet"],
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = {k: [json.loads(l) for l in (tmp_path / k / "metrics.jsonl").read_text().splitlines()]
           for k in ("single", "ddp")}
    for key in ("train_loss", "val_loss"):
        a, b = ([x[key] for x in rec[k] if key in x] for k in ("single", "ddp"))
        assert len(a) == len(b) > 0
        assert max(abs(p - q) for p, q in zip(a, b)) < 1e-5, (key, a, b)
    losses = [x["train_loss"] for x in rec["single"] if "train_loss" in x]
    assert losses[-1] < losses[0] - 0.1, losses
