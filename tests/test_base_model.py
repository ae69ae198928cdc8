"""Issue 12, the library side of the committed base model: compact bf16/fp16 exports (`llm-zero export
--format safetensors`), their SHA256SUMS, the registry of the committed base (`BASE_MODEL`, now
`experiments/base-2core`), and `llm-zero finetune` defaulting to it. Every test runs on a tiny Qwen3
with a BPE tokenizer, pretrained for a few steps."""
import json

import pytest
import torch

from conftest import run_cli
from llm_zero.finetune.cli import load_base
from llm_zero.finetune.instruct import InstructionDataset, custom_collate_fn
from llm_zero.train import checkpoint
from llm_zero.train.checkpoint import (BASE_MODEL, BASE_MODEL_SHA256, EXPERIMENTS, MODEL_FILE, base_model_dir,
                                       find_checkpoint, load_classifier, load_language_model, read_meta,
                                       read_tensors)
from llm_zero.data.corpora import sha256_file
from llm_zero.train.engine import build_model, load_model_from_checkpoint
from llm_zero.train.evaluate import evaluate_text

QWEN3 = ["--config", "configs/qwen3_tiny.yaml", "data.corpus=the-verdict", "data.tokenizer=bpe",
         "data.bpe_vocab_size=300", "model.context_length=64", "model.emb_dim=32", "model.n_heads=4",
         "model.n_layers=1", "model.hidden_dim=64", "model.head_dim=8", "model.n_kv_groups=2",
         "model.tie_embeddings=true", "train.max_steps=4", "train.batch_size=4", "train.eval_interval=4",
         "train.eval_batches=1", "schedule.warmup_steps=1", "run.sample_tokens=0", "train.threads=1"]
TEXT = "I had always thought Jack Gisburn rather a cheap genius, though a good fellow enough. " * 8


def ok(*args):
    code, out, err = run_cli(*args)
    assert code == 0, err
    return out


def refused(*args) -> str:
    "The one-line error (exit status 2) of a command that must be refused."
    code, _, err = run_cli(*args)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, (code, err)
    return err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "A tiny pretrained Qwen3 run and its bf16 export, placed where the registry looks in `experiments`."
    d = tmp_path_factory.mktemp("base")
    ok("train", "--out", d / "run", "--quiet", *QWEN3)
    out = ok("export", "--checkpoint", d / "run", "--format", "safetensors", "--out", d / "experiments" / BASE_MODEL)
    assert "bfloat16 model.safetensors" in out
    return d


@pytest.fixture
def registry(runs, monkeypatch):
    "The registry pointed at the test's `experiments` folder, with the digest of its export."
    monkeypatch.setattr(checkpoint, "EXPERIMENTS", runs / "experiments")
    monkeypatch.setattr(checkpoint, "BASE_MODEL_SHA256", sha256_file(runs / "experiments" / BASE_MODEL / MODEL_FILE))
    return runs / "experiments" / BASE_MODEL


def test_export_is_bf16_and_loads_back_as_the_rounded_float32_model(runs):
    src, exp = find_checkpoint(runs / "run"), runs / "experiments" / BASE_MODEL
    assert sorted(p.name for p in exp.iterdir()) == ["SHA256SUMS", "bpe.txt", "meta.json", "model.safetensors",
                                                    "tokenizer.json"]
    sums = dict(reversed(line.split()) for line in (exp / "SHA256SUMS").read_text().splitlines())
    assert sums == {p.name: sha256_file(p) for p in exp.iterdir() if p.name != "SHA256SUMS"}
    assert {v.dtype for v in read_tensors(exp / MODEL_FILE).values()} == {torch.bfloat16}
    meta, src_meta = read_meta(exp), read_meta(src)
    assert meta["weights_dtype"] == "bfloat16" and meta["model"] == src_meta["model"]
    assert (meta["step"], meta["val_loss"]) == (src_meta["step"], src_meta["val_loss"]) and meta["val_loss"] > 0
    model, tok, _ = load_model_from_checkpoint(exp)
    full, _, _ = load_model_from_checkpoint(src)
    assert tok.kind == "bpe" and tok.encode(TEXT) == load_model_from_checkpoint(src)[1].encode(TEXT)
    for (k, a), b in zip(model.state_dict().items(), full.state_dict().values()):
        assert a.dtype == torch.float32 and torch.equal(a, b.to(torch.bfloat16).float()), k
    rounded = build_model(meta["model"])
    rounded.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in full.state_dict().items()})
    assert evaluate_text(model, tok, TEXT)["loss"] == evaluate_text(rounded.eval(), tok, TEXT)["loss"]
    assert evaluate_text(model, tok, TEXT)["loss"] != evaluate_text(full, tok, TEXT)["loss"]  # it did round


def test_float16_export_and_a_refused_overwrite(runs):
    out = runs / "fp16"
    ok("export", "--checkpoint", runs / "run", "--format", "safetensors", "--dtype", "float16", "--out", out)
    assert {v.dtype for v in read_tensors(out / MODEL_FILE).values()} == {torch.float16}
    assert read_meta(out)["weights_dtype"] == "float16"
    err = refused("export", "--checkpoint", runs / "run", "--format", "safetensors", "--out", runs / "run")
    assert "holds the run being exported" in err  # issue 19: never the run, whatever it holds


def test_a_flipped_byte_is_named_in_one_line(runs, tmp_path):
    import shutil
    exp = shutil.copytree(runs / "experiments" / BASE_MODEL, tmp_path / "exp")
    data = bytearray((exp / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (exp / MODEL_FILE).write_bytes(bytes(data))
    err = refused("generate", "--checkpoint", exp, "--prompt", "I had", "--max-tokens", "2")
    assert f"{exp / MODEL_FILE} does not match its SHA-256" in err and "git checkout" in err


def test_the_registry_finds_and_checks_the_base(registry, monkeypatch):
    assert base_model_dir() == registry
    monkeypatch.setattr(checkpoint, "BASE_MODEL_SHA256", "0" * 64)
    err = refused("finetune", "classify", "--out", registry.parent / "never", "--quiet", "data.limit=20")
    assert f"{registry / MODEL_FILE} has SHA-256" in err and "model.base" in err
    monkeypatch.setattr(checkpoint, "EXPERIMENTS", registry.parent / "elsewhere")
    err = refused("finetune", "instruct", "--out", registry.parent / "never", "--quiet", "data.limit=20")
    assert "is missing" in err and "model.base" in err and "tiny-gpt" in err


def test_classify_lora_instruct_and_chat_default_to_the_committed_base(registry, tmp_path):
    model, tok = load_base()
    assert type(model).__name__ == "Qwen3Model" and tok.kind == "bpe"
    common = ["--quiet", "data.limit=20", "data.max_length=32", "train.epochs=1", "train.lr=1e-3",
              "train.eval_freq=2", "train.eval_iter=1", "train.device=cpu"]
    ok("finetune", "classify", "--out", tmp_path / "cls", *common)
    ok("finetune", "classify", "--out", tmp_path / "lora", *common, "lora.rank=2")
    for run in ("cls", "lora"):
        clf, ctok, meta = load_classifier(tmp_path / run)
        assert meta["model"]["arch"] == "qwen3" and ctok.kind == "bpe" and clf.out_head.out_features == 2
        assert meta["pad_token_id"] == tok.pad_id == tok.eos_id
    assert read_meta(find_checkpoint(tmp_path / "lora"))["lora"]["rank"] == 2
    records = [{"instruction": f"Repeat {i}.", "input": "", "output": f"{i} {i}."} for i in range(12)]
    (tmp_path / "data.json").write_text(json.dumps(records))
    ok("finetune", "instruct", "--out", tmp_path / "ins", "--quiet", f"data.path={tmp_path / 'data.json'}",
       "data.batch_size=4", "train.epochs=1", "train.lr=1e-3", "generate.max_new_tokens=3", "generate.test_limit=1")
    lm, itok, meta = load_language_model(tmp_path / "ins")
    assert meta["task"] == "instruct" and meta["model"]["arch"] == "qwen3" and itok.kind == "bpe"
    reply = ok("chat", "--checkpoint", tmp_path / "ins", "--prompt", "Repeat 3.", "--max-tokens", "3")
    assert reply.endswith("\n")


def test_the_bpe_end_of_text_ends_each_instruction_example(registry):
    _, tok = load_base()
    eos = tok.encode("<|endoftext|>")
    assert eos == [tok.eos_id] and tok.eos_id == tok.pad_id == tok.vocab_size - 1
    ds = InstructionDataset([{"instruction": "Say hi.", "input": "", "output": "Hi."}], tok)
    x, y = custom_collate_fn([ds[0], ds[0][:3]], pad_token_id=tok.pad_id)
    assert y[0, -1] == tok.eos_id and y[1, 2] == tok.eos_id and (y[1, 3:] == -100).all()
    assert tok.decode(ds[0]).endswith("Hi.")  # the response's text survives BPE round trips


@pytest.mark.skipif(not (EXPERIMENTS / BASE_MODEL).is_dir(),
                    reason=f"{EXPERIMENTS / BASE_MODEL} is not committed yet (issues 12 and 20: the base models)")
def test_the_committed_base_model():
    d = base_model_dir()
    assert sha256_file(d / MODEL_FILE) == BASE_MODEL_SHA256
    model, tok, meta = load_model_from_checkpoint(d)
    assert meta["weights_dtype"] in ("bfloat16", "float16") and tok.kind == "bpe" and tok.eos_id is not None
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert (d / MODEL_FILE).stat().st_size <= 50e6
