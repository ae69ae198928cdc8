"""`llm-zero export`: the ONNX graph against PyTorch in onnxruntime, and the tokenizers the page reads."""
import json
import os
import shutil
import stat
from pathlib import Path

import onnx
import pytest
import tiktoken
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_zero.cli import main
from llm_zero.data.corpora import load_text, sha256_file
from llm_zero.model.generation import generate
from llm_zero.model.llama import Llama3Model, Qwen3Model, config_of
from llm_zero.tokenizer.bpe import BPETokenizer
from llm_zero.tokenizer.unigram import UnigramTokenizer
from llm_zero.tokenizer.wordpiece import WordPieceTokenizer
from llm_zero.train.checkpoint import save_checkpoint
from llm_zero.train.config import config_from_dict
from llm_zero.train.engine import build_model, load_model_from_checkpoint, train
from llm_zero.train.tokenizers import CorpusBPETokenizer
from llm_zero.data.dataset import RESPONSE_HEADING, format_input
from llm_zero.export.onnx import (ExportMismatch, OnnxLM, WebExportError, bpe_for_web, export_for_web,
                                 export_onnx, gpt2_bpe, store_float16, tokenizer_for_web)

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "experiments" / "python-docs-char"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("web") / "char"
    # float32 said outright (it is the default): the refusal test below relies on it being accepted
    assert main(["export", "--checkpoint", str(MODEL), "--format", "onnx", "--dtype", "float32",
                 "--out", str(out)]) == 0
    return out


def test_committed_model_matches_its_hashes():
    lines = (MODEL / "SHA256SUMS").read_text().splitlines()
    assert {line.split()[1] for line in lines} == {"model.safetensors", "meta.json", "tokenizer.json"}
    for line in lines:
        digest, name = line.split()
        assert sha256_file(MODEL / name) == digest, name


def test_export_writes_graph_tokenizer_and_config(exported):
    cfg = json.loads((exported / "config.json").read_text())
    model, tok, meta = load_model_from_checkpoint(MODEL)
    assert (cfg["context_length"], cfg["vocab_size"], cfg["step"]) == (64, tok.vocab_size, meta["step"])
    assert cfg["max_logit_diff"] < 1e-4
    for name, digest in cfg["sha256"].items():
        assert sha256_file(exported / name) == digest
    assert json.loads((exported / "tokenizer.json").read_text()) == {"kind": "char", "chars": tok.chars,
                                                                     "itos": list(tok.chars), "unk_id": None}
    assert cfg["eos_id"] is None  # the committed run predates the special ids


def test_char_run_with_special_ids_exports_its_whole_vocabulary(tmp_path):
    # A char run trained now ends its vocabulary with <|endoftext|> and <|unk|>: the page must
    # know all of them, and map a character it never saw to <|unk|> as Python does.
    cfg = config_from_dict({"model": {"context_length": 16, "emb_dim": 32, "n_heads": 2, "n_layers": 1},
                            "data": {"corpus": "the-verdict", "tokenizer": "char"},
                            "train": {"max_steps": 2, "batch_size": 4, "eval_interval": 0},
                            "schedule": {"warmup_steps": 0}, "run": {"sample_tokens": 0}})
    train(cfg, tmp_path / "run", progress=False)
    assert main(["export", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "web")]) == 0
    _, tok, _ = load_model_from_checkpoint(tmp_path / "run")
    web = json.loads((tmp_path / "web" / "tokenizer.json").read_text())
    config = json.loads((tmp_path / "web" / "config.json").read_text())
    assert len(web["itos"]) == config["vocab_size"] == tok.vocab_size == len(tok.chars) + 2
    assert web["itos"][config["eos_id"]] == "<|endoftext|>" and web["itos"][web["unk_id"]] == "<|unk|>"
    text = "I had always thought Jack Gisburn 東京 🙂"
    page_ids = [web["chars"].index(ch) if ch in web["chars"] else web["unk_id"] for ch in text]
    assert page_ids == tok.encode(text) and tok.unk_id in page_ids
    assert "".join(web["itos"][i] for i in page_ids + [tok.eos_id]) == tok.decode(page_ids + [tok.eos_id])


def real_prompts(n: int, length: int) -> list[str]:
    "Passages of the model's own corpus (Python's documentation), spread through it."
    text = load_text()
    return [text[i:i + length] for i in range(1000, len(text), len(text) // n)][:n]


def test_onnx_logits_match_pytorch_on_real_prompts(exported):
    model, tok, _ = load_model_from_checkpoint(MODEL)
    lm = OnnxLM(exported / "model.onnx", 64)
    for length in (1, 7, 64):
        for prompt in real_prompts(5, length):
            ids = torch.tensor([tok.encode(prompt)])
            with torch.no_grad(): expected = model(ids)
            got = lm(ids)
            assert got.shape == expected.shape
            assert (got - expected).abs().max() < 1e-4, prompt


def test_onnx_greedy_generation_equals_pytorch(exported):
    model, tok, _ = load_model_from_checkpoint(MODEL)
    lm = OnnxLM(exported / "model.onnx", 64)
    for prompt in real_prompts(4, 20):
        ids = tok.encode(prompt)
        expected = generate(model, torch.tensor([ids]), 120, 64)[0].tolist()
        assert lm.generate_greedy(ids, 120) == expected


def test_bpe_run_exports_ranks_that_reproduce_its_ids(tmp_path):
    text = load_text("the-verdict")
    tok = CorpusBPETokenizer.train(text, 300)
    model = build_model({"vocab_size": tok.vocab_size, "context_length": 16, "emb_dim": 32, "n_heads": 2,
                         "n_layers": 1, "drop_rate": 0.0, "qkv_bias": True})
    save_checkpoint(tmp_path / "ck", model, meta={"model": model.cfg, "step": 0}, tokenizer=tok)
    assert main(["export", "--checkpoint", str(tmp_path / "ck"), "--out", str(tmp_path / "web")]) == 0
    web = json.loads((tmp_path / "web" / "tokenizer.json").read_text())
    (tmp_path / "ranks.tiktoken").write_text(web["ranks"])
    back = BPETokenizer.from_tiktoken(tmp_path / "ranks.tiktoken", "gpt2", web["special_tokens"])
    sample = text[:2000] + "<|endoftext|>" + text[-500:]
    assert back.encode(sample, allowed_special="all") == tok.encode(sample)
    assert json.loads((tmp_path / "web" / "config.json").read_text())["eos_id"] == tok.eos_id == 299


@pytest.fixture(scope="module")
def gpt2_from_page_ranks(tmp_path_factory):
    "GPT-2 rebuilt from nothing but the ranks and special tokens written for the page."
    web = tokenizer_for_web(gpt2_bpe())
    path = tmp_path_factory.mktemp("gpt2") / "gpt2.tiktoken"
    path.write_text(web["ranks"])
    return BPETokenizer.from_tiktoken(path, "gpt2", web["special_tokens"])


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_gpt2_ranks_for_the_page_give_tiktokens_ids(gpt2_from_page_ranks, text):
    enc = tiktoken.get_encoding("gpt2")
    assert gpt2_from_page_ranks.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")


def test_bad_input_is_named(tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(MODEL), "--format", "tflite", "--out", str(tmp_path / "o")]) == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    cl100k_like = BPETokenizer(gpt2_bpe().ranks, "cl100k")
    with pytest.raises(WebExportError, match="GPT-2's pattern"):
        bpe_for_web(cl100k_like)
    with pytest.raises(WebExportError, match="kind 'wordpiece'"):
        tokenizer_for_web(type("T", (), {"kind": "wordpiece"})())


def test_wordpiece_and_unigram_exports_rebuild_the_same_tokenizers():
    text = load_text("the-verdict")
    wp = WordPieceTokenizer.train(text, vocab_size=500, lowercase=False)
    spec = json.loads(json.dumps(tokenizer_for_web(wp)))
    again = WordPieceTokenizer(spec["vocab"], lowercase=spec["lowercase"], strip_accents=spec["strip_accents"],
                               handle_chinese_chars=spec["handle_chinese_chars"], unk_token=spec["unk_token"],
                               prefix=spec["prefix"], max_input_chars_per_word=spec["max_input_chars_per_word"])
    sample = text[:3000] + " Crème brûlée 東京"
    assert again.encode(sample) == wp.encode(sample)
    uni = UnigramTokenizer.train(text.splitlines(), 400, byte_fallback=True)
    spec = json.loads(json.dumps(tokenizer_for_web(uni)))
    again = UnigramTokenizer([tuple(p) for p in spec["pieces"]], spec["unk_id"], spec["byte_fallback"])
    assert again.encode(sample) == uni.encode(sample)


@pytest.mark.parametrize("family", [Llama3Model, Qwen3Model])
def test_llama_and_qwen_graphs_match_pytorch(tmp_path, family):
    torch.manual_seed(0)
    model = family({"vocab_size": 97, "context_length": 32, "emb_dim": 64, "n_heads": 4, "n_layers": 2,
                    "hidden_dim": 128, "n_kv_groups": 2, "rope_base": 10000.0, "impl": "fast"}).eval()
    lm = OnnxLM(export_onnx(model, tmp_path / "model.onnx"), 32)
    for length in (1, 9, 32):
        ids = torch.randint(0, 97, (1, length))
        with torch.no_grad(): expected = model(ids)
        assert (lm(ids) - expected).abs().max() < 1e-4
    prompt = [5, 17, 3]
    assert lm.generate_greedy(prompt, 40) == generate(model, torch.tensor([prompt]), 40, 32)[0].tolist()


# --- The export folder: never the run itself, only its own files, all or nothing (issues 19, 25) ---

BASE = ROOT / "experiments" / "base-cpu"


def tree(folder: Path) -> dict:
    "Every file under `folder` with its bytes and mode: a folder's complete state."
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mode)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def export(*argv) -> int:
    return main(["export", *map(str, argv)])


@pytest.fixture(scope="module")
def base_copy(tmp_path_factory):
    "A copy of the committed base run, with its README, config, plots and metrics."
    run = tmp_path_factory.mktemp("runs") / "base-cpu"
    shutil.copytree(BASE, run)
    return run


@pytest.mark.parametrize("fmt", ["safetensors", "onnx"])
@pytest.mark.parametrize("force", [False, True])
def test_out_that_is_the_run_itself_is_refused(base_copy, fmt, force, capsys):
    before = tree(base_copy)
    assert "README.md" in before and "loss.png" in before
    assert export("--checkpoint", base_copy, "--format", fmt, "--out", base_copy,
                  *(["--force"] if force else [])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds the run being exported" in err, err
    assert tree(base_copy) == before


def test_out_that_holds_the_run_is_refused(base_copy, capsys):
    before = tree(base_copy)
    assert export("--checkpoint", base_copy, "--format", "safetensors", "--out",
                  base_copy.parent, "--force") == 2
    assert "holds the run being exported" in capsys.readouterr().err
    assert tree(base_copy) == before


@pytest.mark.parametrize("fmt, owned", [("safetensors", "model.safetensors"),
                                        ("onnx", "model.onnx")])
def test_files_the_export_did_not_write_are_kept(fmt, owned, exported, tmp_path, capsys):
    out = tmp_path / "web"
    if fmt == "onnx":  # `exported` is this very command's output: copied, not made again
        shutil.copytree(exported, out)
    else:
        assert export("--checkpoint", MODEL, "--format", fmt, "--out", out) == 0
    (out / "report.md").write_text("my notes on this model\n")
    (out / owned).write_bytes(b"stale")
    before = tree(out)
    assert export("--checkpoint", MODEL, "--format", fmt, "--out", out) == 2
    err = capsys.readouterr().err
    assert "report.md" in err and "--force" in err and err.count("\n") == 1, err
    assert tree(out) == before
    assert export("--checkpoint", MODEL, "--format", fmt, "--out", out, "--force") == 0
    assert (out / "report.md").read_text() == "my notes on this model\n"
    assert (out / owned).read_bytes() != b"stale"


def test_a_failed_export_leaves_nothing_behind(tmp_path):
    with pytest.raises(ExportMismatch):
        export_for_web(MODEL, tmp_path / "web", tol=-1.0)  # every graph is "off": fails at the end
    assert list(tmp_path.iterdir()) == []


def test_a_failed_export_leaves_an_earlier_one_as_it_was(exported, tmp_path):
    out = tmp_path / "web"
    shutil.copytree(exported, out)  # the module's export of MODEL, made with the same defaults
    before = tree(out)
    with pytest.raises(ExportMismatch):
        export_for_web(MODEL, out, tol=-1.0)
    assert tree(out) == before and [p.name for p in tmp_path.iterdir()] == ["web"]


def test_onnx_export_refuses_a_dtype_it_would_not_write(exported, tmp_path, capsys):
    # float16 weights became an onnx option (issue 22); bfloat16 is still refused, while the
    # module's export, which asked for float32 outright, was accepted
    assert export("--checkpoint", MODEL, "--format", "onnx", "--dtype", "bfloat16",
                  "--out", tmp_path / "bfloat16") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bfloat16" in err and "float16" in err, err
    assert not (tmp_path / "bfloat16").exists()
    assert (exported / "model.onnx").is_file()


SMALL_QWEN = {"vocab_size": 97, "context_length": 32, "emb_dim": 64, "n_heads": 4, "n_layers": 2,
              "hidden_dim": 128, "n_kv_groups": 2, "rope_base": 10000.0, "impl": "fast"}


def rounded_to_bfloat16(model):
    "`model` with every weight rounded to bfloat16, as a committed model's weights are."
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16))
    return model.eval()


def test_float16_weights_halve_the_graph_and_keep_the_logits(tmp_path):
    torch.manual_seed(0)
    model = rounded_to_bfloat16(Qwen3Model(SMALL_QWEN))
    path = export_onnx(model, tmp_path / "model.onnx")
    full = path.stat().st_size
    assert store_float16(path) > 0
    assert path.stat().st_size < 0.75 * full  # RoPE's float32 tables weigh in a model this small
    graph = onnx.load(str(path))
    kinds = {w.name: w.data_type for w in graph.graph.initializer}
    # RoPE's tables are float32 numbers float16 cannot hold: they stay float32
    assert onnx.TensorProto.FLOAT in kinds.values() and onnx.TensorProto.FLOAT16 in kinds.values()
    lm = OnnxLM(path, 32)
    for length in (1, 9, 32):
        ids = torch.randint(0, 97, (1, length))
        with torch.no_grad(): expected = model(ids)
        assert (lm(ids) - expected).abs().max() < 1e-4


def manual_gpt_attention(model, ids, layer):
    "Block `layer`'s softmax weights of a GPT, computed here from its weights (chapter 3)."
    att, x = model.trf_blocks[layer].att, model.tok_emb(ids) + model.pos_emb(torch.arange(ids.shape[1]))
    for block in model.trf_blocks[:layer]:
        x = block(x)
    x = model.trf_blocks[layer].norm1(x)
    q, k = att.split_heads(att.W_query(x)), att.split_heads(att.W_key(x))
    scores = (q @ k.transpose(2, 3)) / att.head_dim ** 0.5
    causal = torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool).tril()
    return torch.softmax(scores.masked_fill(~causal, -torch.inf), -1)[0]


def test_attention_output_is_the_blocks_softmax_weights(tmp_path):
    model, _, _ = load_model_from_checkpoint(MODEL)
    lm = OnnxLM(export_onnx(model, tmp_path / "char.onnx", attention_layer=2), 64)
    ids = torch.randint(0, model.cfg["vocab_size"], (1, 40))
    with torch.no_grad():
        expected = manual_gpt_attention(model, ids, 2)
        assert (lm(ids) - model(ids)).abs().max() < 1e-4  # the logits are untouched
    got = lm.attention(ids)
    assert got.shape == (model.cfg["n_heads"], 40, 40)
    assert (got - expected).abs().max() < 1e-5
    torch.manual_seed(0)
    qwen = Qwen3Model(SMALL_QWEN).eval()
    lm = OnnxLM(export_onnx(qwen, tmp_path / "qwen.onnx", attention_layer=1), 32)
    got = lm.attention(torch.randint(0, 97, (1, 20)))
    assert got.shape == (4, 20, 20) and got.triu(1).abs().max() == 0
    assert (got.sum(-1) - 1).abs().max() < 1e-5


def test_float16_export_for_the_page(tmp_path):
    out = tmp_path / "web"
    cfg = export_for_web(BASE, out, dtype="float16", attention_layer=1)
    assert cfg["weights_dtype"] == "float16" and cfg["attention_layer"] == 1
    assert cfg["max_logit_diff"] < 1e-4 and cfg["max_attention_diff"] < 1e-5
    assert (out / "model.onnx").stat().st_size < 10e6  # 4.0 million weights, 2 bytes each
    before, after = cfg["instruction_prompt"]
    assert format_input({"instruction": "Hi.", "input": ""}) + RESPONSE_HEADING == before + "Hi." + after


def test_every_committed_model_exports_and_its_graph_matches_pytorch(exported, tmp_path):
    committed = sorted(p.parent for p in (ROOT / "experiments").rglob("model.safetensors"))
    assert BASE in committed and MODEL in committed
    for run in committed:
        out = tmp_path / run.name
        if run == MODEL:  # `exported` is this very command's output for MODEL: not made twice
            out = exported
        else:
            assert export("--checkpoint", run, "--format", "onnx", "--out", out) == 0, run
        model, tok, _ = load_model_from_checkpoint(run)
        config = json.loads((out / "config.json").read_text())
        assert config["model"] == config_of(model)
        ids = torch.tensor([tok.encode("The results of the")])
        with torch.no_grad(): expected = model(ids)
        got = OnnxLM(out / "model.onnx", config["context_length"])(ids)
        assert (got - expected).abs().max() < 1e-4, run
        assert export("--checkpoint", run, "--format", "safetensors", "--out", tmp_path / "w",
                      "--force") == 0


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755),
                                                        (0o077, 0o600, 0o700)])
@pytest.mark.parametrize("fmt", ["safetensors", "onnx"])
def test_exported_files_honour_the_umask(fmt, umask, file_mode, dir_mode, tmp_path):
    old = os.umask(umask)
    try: assert export("--checkpoint", MODEL, "--format", fmt, "--out", tmp_path / "x") == 0
    finally: os.umask(old)
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == dir_mode
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "x").iterdir()}
    assert set(modes.values()) == {file_mode}, modes
