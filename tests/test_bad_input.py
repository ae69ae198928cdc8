"""Bad input and environment faults, the way a hostile or unlucky user meets them.

Each case asserts three things: the exit status, a one-line message naming the problem (no
traceback), and that nothing written earlier was lost (the run's checkpoint bytes are unchanged,
or the previous checkpoint still loads and resumes). Most cases call `llm_zero.cli.main` in this
process; a few run the installed console script, where the process boundary itself matters."""
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from llm_zero.core import LLMZeroError

LLM_ZERO = str(Path(sys.executable).with_name("llm-zero"))
TINY = """
model: {context_length: 32, emb_dim: 32, n_heads: 2, n_layers: 1}
data: {corpus: the-verdict, tokenizer: char}
schedule: {warmup_steps: 2}
train: {max_steps: 10, batch_size: 8, eval_interval: 5, eval_batches: 2}
run: {log_interval: 5, checkpoint_interval: 5, sample_tokens: 0}
"""


run = run_cli


def cli(*args):
    "The installed console script in a fresh process."
    return subprocess.run([LLM_ZERO, *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def fingerprint(folder: Path) -> dict:
    "sha256 of every file under `folder`: what 'nothing was lost' compares."
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def user_error(result, message, status=2, usage=False):
    "Assert a clean failure: `status`, no traceback, `message` on the last line, and only that line."
    code, _, err = result
    lines = err.strip().splitlines()
    assert code == status, (code, err)
    assert "Traceback" not in err, err
    assert lines and message in lines[-1], (message, err)
    assert len(lines) == 1, err  # a usage error too: one line, pointing at --help
    if usage: assert "error: argument" in lines[0] and lines[0].endswith("--help)"), err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    "A tiny run with checkpoints at steps 5 and 10; tests work on copies of it."
    d = tmp_path_factory.mktemp("bad_input")
    (d / "tiny.yaml").write_text(TINY)
    code, _, err = run("train", "--config", d / "tiny.yaml", "--out", d / "run", "--quiet")
    assert code == 0, err
    return d


@pytest.fixture
def run_dir(trained, tmp_path):
    "A fresh copy of the trained run, with its fingerprint."
    shutil.copytree(trained / "run", tmp_path / "run")
    return tmp_path / "run"


def newest(run_dir: Path) -> Path:
    return sorted((run_dir / "checkpoints").glob("step-*"))[-1]


# 1. Numbers on the command line: range-checked by the parser, naming the flag and the range.
@pytest.mark.parametrize("args, message", [
    (["generate", "--max-tokens", "0"], "argument --max-tokens: must be in [1, inf], got 0"),
    (["generate", "--max-tokens", "-5"], "argument --max-tokens: must be in [1, inf], got -5"),
    (["generate", "--max-tokens", "ten"], "argument --max-tokens: must be an integer in [1, inf], got 'ten'"),
    (["generate", "--temperature", "-1"], "argument --temperature: must be in [0, inf], got -1"),
    (["generate", "--temperature", "nan"], "argument --temperature: must be in [0, inf], got nan"),
    (["generate", "--temperature", "inf"], "argument --temperature: must be in [0, inf], got inf"),
    (["generate", "--top-k", "0"], "argument --top-k: must be in [1, inf], got 0"),
    (["generate", "--top-p", "1.5"], "argument --top-p: must be in (0, 1], got 1.5"),
    (["generate", "--top-p", "0"], "argument --top-p: must be in (0, 1], got 0"),
    (["generate", "--seed", "-1"], "argument --seed: must be in [0, 9223372036854775808), got -1"),
    (["generate", "--device", "gpu"], "argument --device: must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
    (["eval", "--max-tokens", "1"], "argument --max-tokens: must be in [2, inf], got 1"),
    (["eval", "--batch-size", "0"], "argument --batch-size: must be in [1, inf], got 0"),
    (["prepare", "--out", "x", "--val-fraction", "1"], "argument --val-fraction: must be in (0, 1), got 1"),
    (["prepare", "--out", "x", "--val-fraction", "0"], "argument --val-fraction: must be in (0, 1), got 0"),
    (["prepare", "--out", "x", "--vocab-size", "10"], "argument --vocab-size: must be in [257, inf], got 10"),
    (["tokenizer", "train", "--out", "x", "--vocab-size", "256"], "argument --vocab-size: must be in [257, inf]"),
])
def test_numeric_arguments_are_range_checked(trained, args, message):
    if args[0] in ("generate", "eval"): args = [args[0], "--checkpoint", trained / "run", *args[1:]]
    if args[0] == "generate": args += ["--prompt", "I had"]
    before = fingerprint(trained / "run")
    user_error(run(*args), message, usage=True)
    assert fingerprint(trained / "run") == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_unavailable_device(trained):
    user_error(run("eval", "--checkpoint", trained / "run", "--device", "cuda"),
               "argument --device: 'cuda' is not available on this machine; use --device cpu or auto", usage=True)


def test_range_error_in_a_real_process(trained):
    r = cli("generate", "--checkpoint", trained / "run", "--prompt", "I had", "--top-p", "1.5")
    user_error((r.returncode, r.stdout, r.stderr), "argument --top-p: must be in (0, 1], got 1.5", usage=True)


# 2. Prompts, corpora and configs.
def test_prompt_outside_a_char_vocabulary(trained):
    # Issue 10 §1: a character the vocabulary lacks is its <|unk|> id, not an error (05c_run_tokenizers;
    # the error for tokenizers saved without <|unk|> is tested there).
    code, out, err = run("generate", "--checkpoint", trained / "run", "--prompt", "I had 日本", "--max-tokens", 3)
    assert code == 0 and out.startswith("I had 日本"), err


def test_empty_prompt(trained):
    user_error(run("generate", "--checkpoint", trained / "run", "--prompt", ""), "The prompt is empty after tokenization")


def test_unknown_corpus(trained):
    user_error(run("eval", "--checkpoint", trained / "run", "--corpus", "no-such-corpus"),
               "Unknown corpus 'no-such-corpus': use one of python-docs")


def test_corpus_that_is_not_utf8(trained, tmp_path):
    (tmp_path / "latin1.txt").write_bytes("I had always thought Jack Gisburn a cheap génie".encode("latin-1"))
    user_error(run("eval", "--checkpoint", trained / "run", "--corpus", tmp_path / "latin1.txt"),
               "latin1.txt is not UTF-8 text (byte 43 cannot be decoded)")


def test_corpus_shorter_than_one_window(trained, tmp_path):
    (tmp_path / "short.txt").write_text("I had")
    user_error(run("eval", "--checkpoint", trained / "run", "--corpus", tmp_path / "short.txt"),
               "fewer than one window needs (model.context_length + 1 = 33)")


def test_missing_config(tmp_path):
    user_error(run("train", "--config", tmp_path / "nope.yaml"), "nope.yaml does not exist")


def test_config_with_a_misspelt_key(trained, tmp_path):
    user_error(run("train", "--config", trained / "tiny.yaml", "--out", tmp_path / "r", "train.max_step=3"),
               "valid keys of 'train': max_steps")


def test_training_over_an_existing_run(trained, run_dir):
    before = fingerprint(run_dir)
    user_error(run("train", "--config", trained / "tiny.yaml", "--out", run_dir, "--quiet"),
               "already has checkpoints (newest step-00000010); pass --resume")
    assert fingerprint(run_dir) == before


# 3. Checkpoints and the files in them that people open and edit.
def test_missing_checkpoint(tmp_path):
    user_error(run("generate", "--checkpoint", tmp_path / "nowhere", "--prompt", "a"), "nowhere does not exist")


def test_folder_without_a_checkpoint(tmp_path):
    user_error(run("eval", "--checkpoint", tmp_path), "No checkpoint found: ")


@pytest.mark.parametrize("content, message", [
    ("{not json", "tokenizer.json is corrupt"),
    ('["char"]', "field 'kind' must be 'char', 'bpe' or 'gpt2', got None"),
    ('{"kind": "chars", "chars": "ab"}', "field 'kind' must be 'char', 'bpe' or 'gpt2', got 'chars'"),
    ('{"kind": "char", "chars": 42}', "field 'chars' must be a non-empty string"),
    ('{"kind": "bpe", "file": "/etc/passwd"}', "field 'file' must name a merges file in the same folder"),
    ('{"kind": "bpe", "file": "bpe.txt"}', "field 'file' names"),
])
def test_edited_tokenizer_json(run_dir, content, message):
    ck = newest(run_dir)
    (ck / "tokenizer.json").write_text(content)
    before = fingerprint(run_dir)
    user_error(run("generate", "--checkpoint", ck, "--prompt", "I had"), message)
    assert fingerprint(run_dir) == before


def test_tokenizer_json_that_repeats_a_character(run_dir):
    ck = newest(run_dir)
    chars = json.loads((ck / "tokenizer.json").read_text())["chars"]
    (ck / "tokenizer.json").write_text(json.dumps({"kind": "char", "chars": chars[:-1] + chars[0]}))
    user_error(run("generate", "--checkpoint", ck, "--prompt", "I had"), f"field 'chars' repeats {chars[0]!r}")


def test_tokenizer_smaller_than_its_model(run_dir):
    "Refused when the checkpoint is loaded, not with an IndexError half way through generation."
    ck = newest(run_dir)
    chars = json.loads((ck / "tokenizer.json").read_text())["chars"]
    (ck / "tokenizer.json").write_text(json.dumps({"kind": "char", "chars": chars[:-3], "specials": True}))
    # The characters, then <|endoftext|> and <|unk|>: two ids more than the characters, on both sides.
    user_error(run("generate", "--checkpoint", ck, "--prompt", "I had"),
               f"has {len(chars) - 1} ids but its model has {len(chars) + 2}: the model would produce ids it cannot decode")


def test_damaged_bpe_merges_file(trained, tmp_path):
    assert run("tokenizer", "train", "--corpus", "the-verdict", "--vocab-size", 300, "--out", tmp_path / "tok")[0] == 0
    lines = (tmp_path / "tok" / "bpe.txt").read_text(encoding="utf-8").split("\n")
    (tmp_path / "tok" / "bpe.txt").write_text("\n".join(lines[:270] + ["Ġzz Ġqq"] + lines[270:]), encoding="utf-8")
    user_error(run("prepare", "--corpus", "the-verdict", "--tokenizer-from", tmp_path / "tok", "--out", tmp_path / "d"),
               "bpe.txt, line 271: merge 'Ġzz Ġqq' uses a token not defined above it")
    assert not (tmp_path / "d").exists()


def test_tokenizer_from_a_folder_without_one(tmp_path):
    user_error(run("prepare", "--tokenizer-from", tmp_path, "--out", tmp_path / "d"), "No tokenizer.json in")


@pytest.mark.parametrize("edit, message", [
    (lambda m: {**m, "step": "10"}, "field 'step' must be a non-negative integer, got '10'"),
    (lambda m: {**m, "val_loss": "low"}, "field 'val_loss' must be a finite number or null, got 'low'"),
    (lambda m: {**m, "model": {**m["model"], "n_heads": 3}}, "field 'model': GPT config key 'emb_dim' (32) must be divisible"),
    (lambda m: {**m, "model": {**m["model"], "n_layers": 0}}, "field 'model': GPT config key 'n_layers' must be a positive integer"),
    (lambda m: {k: v for k, v in m.items() if k != "model"}, "has no model config"),
    (lambda m: [m], "it must hold a JSON object"),
])
def test_edited_checkpoint_meta(run_dir, edit, message):
    ck = newest(run_dir)
    meta = json.loads((ck / "meta.json").read_text())
    (ck / "meta.json").write_text(json.dumps(edit(meta)))
    before = fingerprint(run_dir)
    code, out, err = run("eval", "--checkpoint", ck, "--max-tokens", 200)
    user_error((code, out, err), message)
    assert f"{ck / 'meta.json'}" in err
    assert fingerprint(run_dir) == before


def test_meta_json_that_is_not_json(run_dir):
    ck = newest(run_dir)
    (ck / "meta.json").write_text('{"step": 10,')
    user_error(run("generate", "--checkpoint", ck, "--prompt", "I had"), "meta.json is corrupt")


def test_truncated_weights(run_dir):
    ck = newest(run_dir)
    (ck / "model.safetensors").write_bytes((ck / "model.safetensors").read_bytes()[:1000])
    user_error(run("generate", "--checkpoint", ck, "--prompt", "I had"), "model.safetensors is corrupt or truncated")


def test_checkpoint_without_weights(run_dir):
    ck = newest(run_dir)
    (ck / "model.safetensors").unlink()
    user_error(run("eval", "--checkpoint", ck), "has no model.safetensors")


def test_edited_tokenizer_in_a_real_process(run_dir):
    (newest(run_dir) / "tokenizer.json").write_text('{"kind": "words"}')
    r = cli("generate", "--checkpoint", newest(run_dir), "--prompt", "I had")
    user_error((r.returncode, r.stdout, r.stderr), "field 'kind' must be 'char', 'bpe' or 'gpt2', got 'words'")


# 4. The environment: disk full, read-only or impossible --out, a damaged cache.
def test_out_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    r = cli("prepare", "--corpus", "the-verdict", "--out", tmp_path / "file" / "data")
    user_error((r.returncode, r.stdout, r.stderr), "a parent of this path is a file, not a folder; choose another path")
    assert (tmp_path / "file").read_text() == "x"


def test_train_out_under_a_file(trained, tmp_path):
    (tmp_path / "file").write_text("x")
    user_error(run("train", "--config", trained / "tiny.yaml", "--out", tmp_path / "file" / "run", "--quiet"),
               "file/run: a parent of this path is a file, not a folder; choose another path")


def test_read_only_out(tmp_path, monkeypatch):
    "Simulated: the tests may run as root, for whom chmod does not make a folder read-only."
    import llm_zero.core
    def read_only(*a, **k): raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(llm_zero.core, "new_temp", read_only)  # what atomic_write makes files with
    user_error(run("tokenizer", "train", "--corpus", "the-verdict", "--vocab-size", 260, "--out", tmp_path / "t"),
               "the file system is read-only; choose a writable --out")
    assert not list((tmp_path / "t").glob("*"))


def test_disk_full_mid_checkpoint_keeps_the_run_resumable(trained, run_dir, monkeypatch):
    "The disk fills up while step 15's state.pt is written: step 10 survives, and the run resumes."
    from llm_zero.train.checkpoint import CheckpointManager, load_training_state, read_meta
    before = fingerprint(newest(run_dir))
    real = Path.write_bytes
    def write_bytes(self, data):
        if self.name.startswith(".state.pt."): raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)
    with monkeypatch.context() as m:
        m.setattr(Path, "write_bytes", write_bytes)
        user_error(run("train", "--config", trained / "tiny.yaml", "--out", run_dir, "--resume", "--quiet",
                       "train.max_steps=15"),
                   "state.pt: the disk is full; free some space or choose another --out")
    ckpts = CheckpointManager(run_dir / "checkpoints")
    assert ckpts.latest().name == "step-00000010" and fingerprint(ckpts.latest()) == before
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    load_training_state(ckpts.latest(), restore_rng=False)
    code, out, err = run("train", "--config", trained / "tiny.yaml", "--out", run_dir, "--resume", "--quiet",
                         "train.max_steps=15")
    assert code == 0 and "Finished at step 15" in out, err
    assert read_meta(ckpts.latest())["step"] == 15


def test_corrupt_cache_file_is_named_and_set_aside(trained, tmp_path, monkeypatch):
    import llm_zero.data.corpora as corpora
    cache = tmp_path / "cache"
    cache.mkdir()
    good = corpora.fetch("the-verdict").read_bytes()
    (cache / "the-verdict.txt").write_bytes(good[:5000])  # truncated
    monkeypatch.setenv("LLM_ZERO_CACHE", str(cache))
    def offline(url, desc, timeout=30): raise OSError(errno.ENETUNREACH, "Network is unreachable")
    monkeypatch.setattr(corpora, "_download", offline)
    user_error(run("eval", "--checkpoint", trained / "run", "--corpus", "the-verdict"),
               f"the-verdict.txt failed its sha256 check and was set aside as {cache / 'the-verdict.txt.corrupt'}")
    assert (cache / "the-verdict.txt.corrupt").read_bytes() == good[:5000]
    (cache / "the-verdict.txt").write_bytes(good)  # the fix the message suggests
    assert run("eval", "--checkpoint", trained / "run", "--corpus", "the-verdict", "--max-tokens", 100)[0] == 0


# 5. Bugs are not user errors: they keep their traceback and say they are bugs.
def test_a_bug_prints_its_traceback(trained, monkeypatch):
    import llm_zero.cli
    def broken(*a, **k): return {}["vocab_size"]
    monkeypatch.setattr(llm_zero.cli, "load_model_from_checkpoint", broken)
    code, _, err = run("generate", "--checkpoint", trained / "run", "--prompt", "I had")
    assert code == 70
    assert "Traceback (most recent call last)" in err and "KeyError: 'vocab_size'" in err
    assert err.strip().splitlines()[-1].startswith("llm-zero: this is a bug in llm_zero")


def test_an_os_error_of_ours_is_a_bug_too(trained, monkeypatch):
    import llm_zero.cli
    def broken(*a, **k): raise OSError(errno.EBADF, "Bad file descriptor")
    monkeypatch.setattr(llm_zero.cli, "load_text", broken)
    code, _, err = run("prepare", "--out", trained / "never")
    assert code == 70 and "OSError: [Errno 9] Bad file descriptor" in err


# 6. The library, called from Python.
def test_gpt2_files_in_the_wrong_order():
    from llm_zero.data.corpora import fetch
    from llm_zero.tokenizer.bpe import BPEFileError, BPETokenizer
    with pytest.raises(BPEFileError, match="passed in the wrong order: encoder.json"):
        BPETokenizer.from_gpt2(fetch("gpt2-vocab"), fetch("gpt2-encoder"))


def test_float_token_ids_in_evaluation(trained):
    from llm_zero.core import InputTypeError
    from llm_zero.train.engine import load_model_from_checkpoint
    from llm_zero.train.evaluate import evaluate_batches, evaluate_text
    model, tok, _ = load_model_from_checkpoint(trained / "run")
    with pytest.raises(InputTypeError, match="evaluation text must be integer token ids, got an array of float32"):
        evaluate_text(model, tok, ids=np.zeros(500, dtype=np.float32))
    with pytest.raises(ValueError, match="targets must be an integer tensor of token ids, got a torch.float32"):
        evaluate_batches(model, [(torch.zeros(1, 8, dtype=torch.long), torch.zeros(1, 8))])


@pytest.mark.parametrize("content, message", [
    ('[{"instruction": "x", "input": ""}]', "Record 0 is missing key(s) ['output']"),
    ('{"instruction": "x"}', "must be a list of records, got dict"),
    ('[{"instruction": "x", "input": "", "output": 3}]', "Record 0: ['output'] must be strings"),
    ('[{"instruction": "x",', "is not valid JSON"),
])
def test_edited_instruction_json(tmp_path, content, message):
    from llm_zero.data.dataset import InstructionDataError, load_instruction_data
    (tmp_path / "data.json").write_text(content)
    with pytest.raises(InstructionDataError) as e: load_instruction_data(tmp_path / "data.json")
    assert str(e.value).startswith(str(tmp_path / "data.json")) and message in str(e.value), e.value


def test_every_error_named_here_is_a_project_error():
    "The command line catches exactly this family, so each user-facing error type must be in it."
    from llm_zero.core import InputError, InputTypeError, WriteError
    from llm_zero.data.corpora import DataIntegrityError, DataUnavailableError, UnknownDataError
    from llm_zero.tokenizer.bpe import BPEFileError
    from llm_zero.train.checkpoint import CheckpointError, RunExistsError
    from llm_zero.train.config import ConfigError
    from llm_zero.train.tokenizers import TokenizerError
    from llm_zero.data.dataset import InstructionDataError
    for cls, standard in [(InputError, ValueError), (InputTypeError, TypeError), (WriteError, OSError),
                          (DataIntegrityError, RuntimeError), (DataUnavailableError, RuntimeError),
                          (UnknownDataError, KeyError), (BPEFileError, ValueError), (CheckpointError, RuntimeError),
                          (RunExistsError, FileExistsError), (ConfigError, ValueError), (TokenizerError, ValueError),
                          (InstructionDataError, ValueError)]:
        assert issubclass(cls, LLMZeroError) and issubclass(cls, standard), cls
