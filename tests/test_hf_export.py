"""Chapter 10: runs exported for Hugging Face `transformers` and `tokenizers` load there
and agree with llm_zero token for token (committed models, and tiny runs of every
architecture and tokenizer kind); tokenizer.json encodes as ours does (hypothesis); an
exported folder imports back to a run folder that fine-tuning starts from.
No network: HF_HUB_OFFLINE=1."""
import argparse
import contextlib
import io
import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

import llm_zero.export.hf as hfx
from llm_zero.export.hf import HFExportError, export_hf, import_hf, tokenizer_json
from llm_zero.finetune.cli import add_finetune_commands
from llm_zero.train.checkpoint import load_language_model
from llm_zero.model.generation import generate
from llm_zero.model.llama import config_of
from llm_zero.train.config import load_config
from llm_zero.train.engine import load_model_from_checkpoint, train
from llm_zero.train.tokenizers import CharTokenizer, GPT2Tokenizer, load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = [ROOT / "experiments" / "python-docs-char", ROOT / "experiments" / "base-cpu",
             ROOT / "experiments" / "finetune-base" / "instruct-model",
             ROOT / "experiments" / "base-2core"]
# One tiny run per architecture, each with another tokenizer kind: every kind is exported.
TINY = {
    "gpt2": ("{arch: gpt2, context_length: 32, emb_dim: 32, n_heads: 2, n_layers: 2}",
             "char"),
    "llama3": ("{arch: llama3, context_length: 32, emb_dim: 32, n_heads: 4, n_layers: 2, "
               "hidden_dim: 64, n_kv_groups: 2, rope_base: 10000.0}", "bpe"),
    "qwen3": ("{arch: qwen3, context_length: 32, emb_dim: 32, n_heads: 4, n_layers: 2, "
              "hidden_dim: 64, n_kv_groups: 2, rope_base: 10000.0, head_dim: 16, "
              "tie_embeddings: true}", "gpt2"),
}
PROMPT = "The cat said "


def tiny_config(arch):
    model, kind = TINY[arch]
    return f"""
model: {model}
data: {{corpus: the-verdict, tokenizer: {kind}, bpe_vocab_size: 300}}
optimizer: {{lr: 3.0e-3}}
schedule: {{warmup_steps: 1, min_lr: 3.0e-4}}
train: {{max_steps: 2, batch_size: 4, eval_interval: 0, eval_batches: 1, threads: 1}}
run: {{log_interval: 1, checkpoint_interval: 2, sample_tokens: 0}}
"""


@pytest.fixture(scope="module", params=[*TINY, *(str(p.relative_to(ROOT / "experiments")) for p in COMMITTED)])
def exported(request, tmp_path_factory):
    "A run folder and its Hugging Face export."
    torch.manual_seed(0)
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp(request.param.replace("/", "-"))
    if request.param in TINY:
        (d / "tiny.yaml").write_text(tiny_config(request.param))
        run = d / "run"
        train(load_config(d / "tiny.yaml"), run, progress=False)
    else: run = ROOT / "experiments" / request.param
    return run, export_hf(run, d / "hf")


def test_files_and_ids(exported):
    run, hf = exported
    names = {"config.json", "model.safetensors", "generation_config.json",
             "tokenizer.json", "tokenizer_config.json"}
    assert names <= {p.name for p in hf.iterdir()}
    _, tok, _ = load_model_from_checkpoint(run)
    gen = json.loads((hf / "generation_config.json").read_text())
    assert gen["eos_token_id"] == tok.eos_id and gen["pad_token_id"] == tok.pad_id


def test_same_logits_and_greedy_tokens(exported):
    run, hf = exported
    ours, tok, _ = load_model_from_checkpoint(run)
    theirs = AutoModelForCausalLM.from_pretrained(hf).eval()
    x = torch.tensor([tok.encode(PROMPT)])
    with torch.no_grad():
        torch.testing.assert_close(theirs(x).logits, ours(x), atol=1e-4, rtol=1e-4)
    n = ours.cfg["context_length"] - x.shape[1]  # in the window: ours slides, theirs not
    want = generate(ours, x, n, ours.cfg["context_length"], eos_id=tok.eos_id)[0].tolist()
    got = theirs.generate(x, max_new_tokens=n, do_sample=False)[0].tolist()
    if tok.eos_id is not None and got[-1] == tok.eos_id:
        got = got[:-1]  # ours stops before the end-of-text id, theirs includes it
    assert got == want


def test_pipeline_greedy_text(exported):
    run, hf = exported
    ours, tok, _ = load_model_from_checkpoint(run)
    x = torch.tensor([tok.encode(PROMPT)])
    ids = generate(ours, x, 8, ours.cfg["context_length"], eos_id=tok.eos_id)[0].tolist()
    pipe = pipeline("text-generation", model=str(hf), device="cpu")
    out = pipe(PROMPT, max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert out == tok.decode(ids)


def test_auto_tokenizer_ids(exported):
    run, hf = exported
    tok, theirs = load_tokenizer(run), AutoTokenizer.from_pretrained(hf)
    text = (ROOT / "README.md").read_text(encoding="utf-8")[:3000]
    text += " <|endoftext|> naïve"
    if tok.kind == "char" and tok.unk_id is None:  # an old char tokenizer: no <|unk|>
        text = "".join(c for c in text if c in tok.stoi)
    ids = tok.encode(text)
    assert theirs.encode(text) == ids
    assert theirs.decode(ids) == tok.decode(ids)


def test_round_trip_import(exported, tmp_path):
    run, hf = exported
    back = import_hf(hf, tmp_path / "back")
    a, ta, _ = load_model_from_checkpoint(run)
    b, tb, _ = load_model_from_checkpoint(back)
    assert type(a) is type(b) and ta.kind == tb.kind and tb.vocab_size == ta.vocab_size
    # HF's GPT-2 always has qkv biases (zero here); head_dim comes back spelled out.
    same = {k: v for k, v in config_of(a).items() if k not in ("qkv_bias", "head_dim")}
    assert {k: v for k, v in config_of(b).items() if k in same} == same
    x = torch.tensor([ta.encode(PROMPT)])
    assert tb.encode(PROMPT) == x[0].tolist()
    with torch.no_grad(): torch.testing.assert_close(b(x), a(x), atol=1e-4, rtol=1e-4)


def test_export_refuses_existing_folder_and_leaves_nothing(tmp_path, monkeypatch):
    (tmp_path / "hf").mkdir()
    with pytest.raises(HFExportError, match="already exists"):
        export_hf(COMMITTED[0], tmp_path / "hf")
    assert list((tmp_path / "hf").iterdir()) == []

    def broken(tok): raise RuntimeError("disk full")  # after the weights are written
    monkeypatch.setattr(hfx, "tokenizer_json", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_hf(COMMITTED[0], tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_import_refuses_unknown_folders(tmp_path):
    with pytest.raises(HFExportError, match="config.json"):
        import_hf(tmp_path, tmp_path / "out")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    tok_json = json.dumps(tokenizer_json(CharTokenizer("ab")))
    (tmp_path / "tokenizer.json").write_text(tok_json)
    with pytest.raises(HFExportError, match="model_type 'bert'"):
        import_hf(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_imported_folder_starts_instruct_finetune(tmp_path):
    back = import_hf(export_hf(COMMITTED[1], tmp_path / "hf"), tmp_path / "base")
    p = argparse.ArgumentParser(prog="llm-zero")
    add_finetune_commands(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["finetune", "instruct", "--config",
                         str(ROOT / "configs/finetune_instruct.yaml"),
                         "--out", str(tmp_path / "ins"), "--quiet", f"model.base={back}",
                         "data.limit=12", "train.epochs=1", "generate.max_new_tokens=2",
                         "generate.test_limit=1"])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert args.func(args) == 0
    model, _, _ = load_language_model(tmp_path / "ins")
    assert model.cfg["vocab_size"] == 4096


BPE = load_tokenizer(COMMITTED[1])
CHAR = CharTokenizer("\n abcdefghijklmnopqrstuvwxyzé日<|>")  # with <|unk|>, as trained now
KINDS = {"bpe": BPE, "gpt2": GPT2Tokenizer(), "char": CHAR}
HF = {k: Tokenizer.from_str(json.dumps(tokenizer_json(t))) for k, t in KINDS.items()}
# Lone surrogates cannot cross into Rust; the rest of Unicode can, mixed with pieces the
# split regex cares about and the special token's text.
PIECES = [" ", "   ", "\n", "\r\n", "'s", "'LL", "12345", "héllo", "日本語", "🙂", "\t"]
TEXT = st.lists(st.one_of(st.text(st.characters(exclude_categories=["Cs"])),
                          st.just("<|endoftext|>"), st.sampled_from(PIECES)),
                max_size=10).map("".join)


@settings(max_examples=300, deadline=None)
@given(TEXT, st.sampled_from(sorted(KINDS)))
def test_tokenizer_json_encodes_as_ours(text, kind):
    ids = KINDS[kind].encode(text)
    assert HF[kind].encode(text).ids == ids
    assert HF[kind].decode(ids, skip_special_tokens=False) == KINDS[kind].decode(ids)


def test_the_command_line_export_matches_generate_token_for_token(tmp_path):
    "`llm-zero export --format hf`, then transformers' greedy pipeline equals llm-zero generate."
    from conftest import run_cli
    run = ROOT / "experiments" / "base-cpu"
    code, _, err = run_cli("export", "--checkpoint", run, "--format", "hf", "--out", tmp_path / "hf")
    assert code == 0, err
    code, ours, err = run_cli("generate", "--checkpoint", run, "--prompt", PROMPT,
                              "--temperature", "0", "--max-tokens", "40")
    assert code == 0, err
    pipe = pipeline("text-generation", model=str(tmp_path / "hf"), device="cpu")
    theirs = pipe(PROMPT, max_new_tokens=40, do_sample=False)[0]["generated_text"]
    assert theirs == ours.rstrip("\n")  # generate ends its stream with a newline


def test_every_committed_model_is_exported_here():
    "A model committed later must join COMMITTED: every committed model round-trips."
    committed = {p.parent for p in (ROOT / "experiments").rglob("model.safetensors")}
    assert committed == set(COMMITTED)
