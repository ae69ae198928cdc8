"""Chapter 10a: `llm-zero export --format gguf` writes a file whose tensors, metadata and
tokenizer fields `gguf`'s own reader finds as llama.cpp needs them (fast), and which llama.cpp
itself loads and continues greedily as `llm-zero generate --temperature 0` does (slow: needs a
Python with llama-cpp-python in $LLM_ZERO_LLAMA_CPP_PYTHON; see benchmarks/RESULTS.md)."""
import json
import os
import subprocess
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from conftest import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

from llm_zero.data.english import english_mix_val
from llm_zero.export.gguf import (GGUFExportError, export_gguf, gguf_name, gguf_vocab,
                                  interleave_heads, write_gguf)
from llm_zero.model.llama import build_model, config_of
from llm_zero.model.rope import llama3_scale_inv_freq, rope_inv_freq
from llm_zero.tokenizer.bpe import BPETokenizer
from llm_zero.train.checkpoint import save_checkpoint
from llm_zero.train.engine import load_model_from_checkpoint
from llm_zero.train.tokenizers import CharTokenizer, CorpusBPETokenizer, GPT2Tokenizer
from llm_zero.train.tokenizers import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "experiments" / "base-cpu"
COMMITTED = sorted(p.parent for p in (ROOT / "experiments").rglob("model.safetensors"))
PROMPT = "The cat said "
# The split regex llama.cpp applies for tokenizer.ggml.pre = "gpt-2" (GPT-2's original).
LLAMA_CPP_GPT2 = (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"
                  r"|\s+(?!\S)|\s+")
TINY_LLAMA = {"arch": "llama3", "vocab_size": 4096, "context_length": 32, "emb_dim": 32,
              "n_heads": 4, "n_layers": 2, "hidden_dim": 64, "n_kv_groups": 2,
              "rope_base": 10000.0, "tie_embeddings": False,
              "rope_freq": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_context_length": 16}}


def fields(reader) -> dict:
    return {k: f.contents() for k, f in reader.fields.items()}


def tokenizer_from_gguf(reader) -> Tokenizer:
    "llama.cpp's byte-level BPE rebuilt from the file's tokenizer.ggml.* fields only."
    f = fields(reader)
    tokens, types = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.token_type"]
    vocab = {t: i for i, (t, k) in enumerate(zip(tokens, types)) if k == 1}
    merges = [tuple(m.split(" ")) for m in f["tokenizer.ggml.merges"]]
    t = Tokenizer(models.BPE(vocab, merges, ignore_merges=False))  # llama.cpp: merges only
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA_CPP_GPT2), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    t.add_special_tokens([tokens[i] for i, k in enumerate(types) if k == 3])
    return t


@pytest.fixture(scope="module")
def base_gguf(tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf") / "base"
    code, stdout, err = run_cli("export", "--format", "gguf", "--checkpoint", BASE, "--out", out)
    assert code == 0, err
    assert "model.gguf" in stdout
    return gguf.GGUFReader(out / "model.gguf")


def test_tensors_equal_the_checkpoint(base_gguf):
    model, _, _ = load_model_from_checkpoint(BASE)
    state = {gguf_name(k): v for k, v in model.state_dict().items()}
    assert {t.name for t in base_gguf.tensors} == set(state)
    for t in base_gguf.tensors:
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
        np.testing.assert_array_equal(np.asarray(t.data), state[t.name].numpy())


def test_metadata_fields(base_gguf):
    model, tok, _ = load_model_from_checkpoint(BASE)
    c, f = model.cfg, fields(base_gguf)
    want = {"general.architecture": "qwen3", "qwen3.context_length": c["context_length"],
            "qwen3.embedding_length": c["emb_dim"], "qwen3.block_count": c["n_layers"],
            "qwen3.feed_forward_length": c["hidden_dim"],
            "qwen3.attention.head_count": c["n_heads"],
            "qwen3.attention.head_count_kv": c["n_kv_groups"],
            "qwen3.attention.key_length": c["emb_dim"] // c["n_heads"],
            "qwen3.rope.freq_base": c["rope_base"], "tokenizer.ggml.model": "gpt2",
            "tokenizer.ggml.pre": "gpt-2", "tokenizer.ggml.eos_token_id": tok.eos_id,
            "tokenizer.ggml.padding_token_id": tok.pad_id,
            "tokenizer.ggml.add_bos_token": False}
    assert {k: f[k] for k in want} == want
    assert f["qwen3.attention.layer_norm_rms_epsilon"] == pytest.approx(c["norm_eps"])
    assert len(f["tokenizer.ggml.tokens"]) == c["vocab_size"]


def test_tokenizer_fields_give_our_ids_on_held_out_text(base_gguf):
    tok, theirs = load_tokenizer(BASE), tokenizer_from_gguf(base_gguf)
    text = english_mix_val("brown")[:100_000] + english_mix_val("python-docs")[:20_000]
    text += " <|endoftext|> naïve 日本語 🙂\t\r\n  x   "
    ids = tok.encode(text)
    assert theirs.encode(text).ids == ids
    assert theirs.decode(ids, skip_special_tokens=False) == text


PIECES = [" ", "   ", "\n", "\r\n", "'s", "'LL", "12345", "héllo", "日本語", "🙂", "\t",
          "<|endoftext|>", " the", "ing"]
TEXT = st.lists(st.one_of(st.text(st.characters(exclude_categories=["Cs"])),
                          st.sampled_from(PIECES)), max_size=12).map("".join)


@pytest.fixture(scope="module")
def both_kinds(base_gguf, tmp_path_factory):
    "kind -> (our tokenizer, the one rebuilt from a GGUF file): the base BPE and GPT-2's."
    model = build_model({"arch": "qwen3", "vocab_size": 50257, "context_length": 8,
                         "emb_dim": 8, "n_heads": 2, "n_layers": 1, "hidden_dim": 8,
                         "n_kv_groups": 1, "rope_base": 10000.0, "head_dim": 4})
    path = write_gguf(model, GPT2Tokenizer(), tmp_path_factory.mktemp("gpt2") / "m.gguf")
    return {"bpe": (load_tokenizer(BASE), tokenizer_from_gguf(base_gguf)),
            "gpt2": (GPT2Tokenizer(), tokenizer_from_gguf(gguf.GGUFReader(path)))}


@settings(max_examples=300, deadline=None)
@given(text=TEXT, kind=st.sampled_from(["bpe", "gpt2"]))
def test_tokenizer_fields_encode_as_ours(both_kinds, text, kind):
    ours, theirs = both_kinds[kind]
    assert theirs.encode(text).ids == ours.encode(text)


def test_llama_rows_reordered_for_neighbour_rope_and_frequency_scaling(tmp_path):
    torch.manual_seed(0)
    model = build_model(TINY_LLAMA)
    path = write_gguf(model, load_tokenizer(BASE), tmp_path / "m.gguf")
    r = gguf.GGUFReader(path)
    data = {t.name: np.asarray(t.data) for t in r.tensors}
    assert fields(r)["general.architecture"] == "llama"
    att, d = model.trf_blocks[1].att, 8
    wq, wk = att.W_query.weight.detach().numpy(), att.W_key.weight.detach().numpy()
    head0 = [0, 4, 1, 5, 2, 6, 3, 7]  # each row next to its RoPE partner i + d/2
    np.testing.assert_array_equal(data["blk.1.attn_q.weight"][:d], wq[head0])
    np.testing.assert_array_equal(data["blk.1.attn_k.weight"][d:2 * d], wk[[d + i for i in head0]])
    np.testing.assert_array_equal(data["blk.1.attn_v.weight"],
                                  att.W_value.weight.detach().numpy())
    plain = rope_inv_freq(d, 10000.0)
    want = plain / llama3_scale_inv_freq(plain, **TINY_LLAMA["rope_freq"])
    np.testing.assert_allclose(data["rope_freqs.weight"], want.numpy())
    assert "output.weight" in data  # untied
    w = torch.randn(12, 5)
    assert torch.equal(interleave_heads(w, 3)[:4], w[[0, 2, 1, 3]])


def test_every_committed_model_exports_or_is_refused_by_name(tmp_path):
    assert COMMITTED, "no committed model found"
    for run in COMMITTED:
        model, _, _ = load_model_from_checkpoint(run)
        arch = config_of(model)["arch"]
        code, _, err = run_cli("export", "--format", "gguf", "--checkpoint", run,
                               "--out", tmp_path / run.name)
        if arch == "gpt2":  # GGUF is for the Llama family here; hf and onnx take GPT-2
            assert code == 2 and err.count("\n") == 1 and "this run is gpt2" in err, err
            assert not (tmp_path / run.name).exists()
            continue
        assert code == 0, err
        r = gguf.GGUFReader(tmp_path / run.name / "model.gguf")
        state = {gguf_name(k): v for k, v in model.state_dict().items()}
        for t in r.tensors:  # qwen3 goes in as it is: every tensor equal
            np.testing.assert_array_equal(np.asarray(t.data), state[t.name].numpy())


def test_unsupported_tokenizers_are_refused_with_one_line(tmp_path):
    model = build_model({**TINY_LLAMA, "vocab_size": 300})
    with pytest.raises(GGUFExportError, match="this run has char"):
        write_gguf(model, CharTokenizer("abc"), tmp_path / "a.gguf")
    text = "the cat and the hat " * 20
    cl100k = CorpusBPETokenizer(BPETokenizer.train(text, 270, "cl100k", ["<|endoftext|>"]))
    with pytest.raises(GGUFExportError, match="not GPT-2's"):
        write_gguf(model, cl100k, tmp_path / "b.gguf")
    with pytest.raises(GGUFExportError, match="the model only 300"):
        gguf_vocab(GPT2Tokenizer(), 300)
    assert list(tmp_path.iterdir()) == []
    char = CharTokenizer("abc")
    char_model = build_model({**TINY_LLAMA, "vocab_size": char.vocab_size})
    run = save_checkpoint(tmp_path / "char-run", char_model,
                          meta={"model": config_of(char_model)}, tokenizer=char)
    code, _, err = run_cli("export", "--format", "gguf", "--checkpoint", run,
                           "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and "--format hf" in err, err
    assert not (tmp_path / "out").exists()
    code, _, err = run_cli("export", "--format", "gguf", "--dtype", "float16",
                           "--checkpoint", BASE, "--out", tmp_path / "out")
    assert code == 2 and "drop --dtype" in err, err


def test_a_second_export_replaces_the_file(tmp_path):
    first = export_gguf(BASE, tmp_path / "out")
    size = first.stat().st_size
    first.write_bytes(b"stale")
    assert export_gguf(BASE, tmp_path / "out").stat().st_size == size
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.gguf"]


LLAMA_PYTHON = os.environ.get("LLM_ZERO_LLAMA_CPP_PYTHON")


@pytest.mark.slow
@pytest.mark.skipif(not LLAMA_PYTHON, reason="set LLM_ZERO_LLAMA_CPP_PYTHON to a Python "
                    "with llama-cpp-python (it builds llama.cpp from source)")
def test_llama_cpp_agrees_with_generate(tmp_path):
    path = export_gguf(BASE, tmp_path / "gguf")
    model, tok, _ = load_model_from_checkpoint(BASE)
    prompt, n_new = tok.encode(PROMPT), 60
    texts = [english_mix_val("brown")[:20_000], "a<|endoftext|>b  naïve 日本語\t\r\n  "]
    job = {"model": str(path), "n_ctx": 256, "prompt": prompt, "n_new": n_new, "texts": texts}
    out = subprocess.run([LLAMA_PYTHON, str(ROOT / "benchmarks" / "llamacpp_side.py")],
                         input=json.dumps(job), capture_output=True, text=True, check=True)
    theirs = json.loads(out.stdout)
    assert theirs["ids"] == [tok.encode(t) for t in texts]
    with torch.no_grad():
        logits = model(torch.tensor([prompt]))[0]
    torch.testing.assert_close(torch.tensor(theirs["logits"]), logits, atol=1e-3, rtol=1e-3)
    code, ours, err = run_cli("generate", "--checkpoint", BASE, "--prompt", PROMPT,
                              "--temperature", "0", "--max-tokens", n_new)
    assert code == 0, err
    assert PROMPT + tok.decode(theirs["greedy"]) == ours.rstrip("\n")
