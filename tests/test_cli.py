"""The `llm-zero` console script, run as a user would: help everywhere, the stable command forms,
streaming generation, evaluation, data preparation, tokenizer training, and one-line errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

LLM_ZERO = str(Path(sys.executable).with_name("llm-zero"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
CONFIGS = Path(__file__).resolve().parents[1] / "configs"

TINY = """
model: {context_length: 32, emb_dim: 32, n_heads: 2, n_layers: 1}
data: {corpus: the-verdict, tokenizer: char}
schedule: {warmup_steps: 2}
train: {max_steps: 200, batch_size: 8, eval_interval: 0, eval_batches: 4}
run: {log_interval: 5, checkpoint_interval: 10, sample_tokens: 20, sample_prompt: "I had "}
"""


def cli(*args, ok=True):
    "Run the installed console script in a fresh process, as a user would."
    r = subprocess.run([LLM_ZERO, *map(str, args)], env=ENV, capture_output=True, text=True, timeout=300)
    if ok: assert r.returncode == 0, r.stderr[-2000:]
    return r


def main(*args, ok=True):
    "Run `llm_zero.cli.main` in this process (same code path, no interpreter start-up)."
    import contextlib
    import io
    import types
    import torch
    from llm_zero.cli import main as entry
    torch.set_num_threads(1)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = entry([str(a) for a in args])
    if ok: assert code == 0, err.getvalue()[-2000:]
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "tiny.yaml").write_text(TINY)
    r = cli("train", "--config", d / "tiny.yaml", "--out", d / "run", "--quiet", "train.max_steps=20")
    return d, r


def test_help_everywhere():
    from llm_zero.cli import build_parser
    import contextlib
    import io
    for argv in ([], ["train"], ["generate"], ["eval"], ["prepare"], ["tokenizer"], ["tokenizer", "train"]):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
            build_parser().parse_args([*argv, "--help"])
        assert e.value.code == 0 and out.getvalue().startswith("usage: llm-zero"), argv
    assert "--config" in cli("train", "--help").stdout  # the installed console script itself


def test_train_with_overrides_prints_samples_before_and_after(run):
    d, r = run
    out = r.stdout + r.stderr
    assert "Sample before training (step 0):\nI had " in out and "Sample at step 20:\nI had " in out
    assert "Finished at step 20" in r.stdout
    cfg = (d / "run" / "config.yaml").read_text()
    assert "max_steps: 20" in cfg  # the override, recorded in the resolved config
    assert (d / "run" / "checkpoints" / "step-00000020" / "model.safetensors").is_file()


def test_resume_with_the_same_out_continues(run):
    d, _ = run
    r = cli("train", "--config", d / "tiny.yaml", "--out", d / "run", "--resume", "--quiet", "train.max_steps=30")
    assert "Resuming" in r.stdout + r.stderr and "from step-00000020" in r.stdout + r.stderr
    assert "Finished at step 30" in r.stdout


def test_generate_streams(run):
    d, _ = run
    p = subprocess.Popen([LLM_ZERO, "generate", "--checkpoint", d / "run", "--prompt", "I had ", "--max-tokens", "400",
                          "--temperature", "1.0", "--top-p", "0.9",
                          # top-k: a char model 20 steps old may still sample <|endoftext|> and stop early
                          "--top-k", "10"], env=ENV, stdout=subprocess.PIPE, text=True)
    first = p.stdout.read(12)   # arrives before the process is done: the text is streamed
    still_running = p.poll() is None
    rest = p.stdout.read()
    assert p.wait() == 0 and first.startswith("I had ") and len(first + rest) > 300
    assert still_running


def test_generate_is_reproducible_and_greedy_is_deterministic(run):
    d, _ = run
    a = main("generate", "--checkpoint", d / "run", "--prompt", "I had", "--max-tokens", 30, "--seed", 1).stdout
    b = main("generate", "--checkpoint", d / "run", "--prompt", "I had", "--max-tokens", 30, "--seed", 1).stdout
    c = main("generate", "--checkpoint", d / "run", "--prompt", "I had", "--max-tokens", 30, "--seed", 2).stdout
    assert a == b != c
    g1 = main("generate", "--checkpoint", d / "run", "--prompt", "I had", "--max-tokens", 30, "--temperature", 0, "--seed", 1).stdout
    g2 = main("generate", "--checkpoint", d / "run", "--prompt", "I had", "--max-tokens", 30, "--temperature", 0, "--seed", 2).stdout
    assert g1 == g2


def test_eval_reports_perplexity_and_bits_per_byte(run):
    d, _ = run
    r = json.loads(cli("eval", "--checkpoint", d / "run", "--corpus", "the-verdict", "--max-tokens", 3000, "--json").stdout)
    assert r["tokens"] > 2000 and abs(r["perplexity"] - np.exp(r["loss"])) < 1e-6 * r["perplexity"]
    assert 0 < r["bits_per_byte"] < 8


def test_eval_scores_the_validation_split_that_train_held_out(run):
    """#26: by default `eval` scores the run's own held-out tokens, exactly those `train` validated on;
    `--split train` scores other text; the output names the split and the time taken."""
    import torch
    from llm_zero.train.config import load_config
    from llm_zero.train.engine import load_model_from_checkpoint, load_run_data
    from llm_zero.train.evaluate import evaluate_text
    d, _ = run
    val = json.loads(main("eval", "--checkpoint", d / "run", "--json").stdout)
    train = json.loads(main("eval", "--checkpoint", d / "run", "--split", "train", "--json").stdout)
    assert (val["split"], train["split"], val["corpus"]) == ("val", "train", "the-verdict")
    torch.set_num_threads(1)
    model, tok, _ = load_model_from_checkpoint(d / "run")
    held_out = load_run_data(load_config(d / "run" / "config.yaml"), d / "run").val.ids
    expected = evaluate_text(model, tok, ids=np.asarray(held_out))
    assert (val["tokens"], val["bytes"]) == (expected["tokens"], expected["bytes"])
    assert abs(val["loss"] - expected["loss"]) < 1e-6
    assert train["tokens"] > 5 * val["tokens"] and train["loss"] != val["loss"]
    text = main("eval", "--checkpoint", d / "run", "--max-tokens", 500).stdout
    assert text.startswith("the-verdict (val split): loss ") and text.rstrip().endswith(" s)")
    print(f"eval of 500 tokens: {text.rstrip().rsplit('; ', 1)[1]}")  # a timing, not asserted


def test_prepare_and_train_on_the_token_files(tmp_path):
    main("prepare", "--corpus", "the-verdict", "--tokenizer", "gpt2", "--out", tmp_path / "gpt2")
    meta = json.loads((tmp_path / "gpt2" / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 50257
    import tiktoken
    from llm_zero.data.corpora import load_text
    ids = tiktoken.get_encoding("gpt2").encode(load_text("the-verdict"))
    train = np.fromfile(tmp_path / "gpt2" / "train.bin", dtype=np.uint16)
    val = np.fromfile(tmp_path / "gpt2" / "val.bin", dtype=np.uint16)
    assert np.concatenate([train, val]).tolist() == ids and len(train) == round(len(ids) * 0.9)
    # A BPE tokenizer trained by `tokenizer train`, reused by `prepare`, then training on the result.
    main("tokenizer", "train", "--corpus", "the-verdict", "--vocab-size", 300, "--out", tmp_path / "tok")
    main("prepare", "--corpus", "the-verdict", "--tokenizer-from", tmp_path / "tok", "--out", tmp_path / "bpe")
    assert json.loads((tmp_path / "bpe" / "meta.json").read_text())["vocab_size"] == 300
    (tmp_path / "c.yaml").write_text(TINY)
    r = main("train", "--config", tmp_path / "c.yaml", "--out", tmp_path / "run", "--quiet",
            f"data.prepared={tmp_path / 'bpe'}", "train.max_steps=5", "run.sample_tokens=0")
    assert "Finished at step 5" in r.stdout
    assert json.loads((tmp_path / "run" / "tokenizer.json").read_text())["kind"] == "bpe"


@pytest.mark.parametrize("args, message", [
    (["train", "--config", CONFIGS / "nope.yaml"], "does not exist"),
    (["train", "--config", CONFIGS / "default.yaml", "optimizer.lerning_rate=1"], "valid keys of 'optimizer': lr,"),
    (["generate", "--checkpoint", "/nonexistent/run", "--prompt", "x"], "does not exist"),
    (["eval", "--checkpoint", "/nonexistent/run"], "does not exist"),
    (["prepare", "--corpus", "no-such-corpus", "--out", "/tmp/never"], "Unknown corpus 'no-such-corpus'"),
])
def test_bad_input_is_one_line(args, message):
    r = main(*args, ok=False)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_bad_sampling_settings_and_foreign_text(run):
    d, _ = run
    r = cli("generate", "--checkpoint", d / "run", "--prompt", "I had", "--top-p", 0, ok=False)  # a real process
    assert r.returncode == 2 and "argument --top-p: must be in (0, 1], got 0" in r.stderr and "Traceback" not in r.stderr
    r = main("generate", "--checkpoint", d / "run", "--prompt", "I had", "--temperature", -1, ok=False)
    assert r.returncode == 2 and "argument --temperature: must be in [0, inf], got -1" in r.stderr
    # Characters the corpus never had are the tokenizer's <|unk|>, not an error (05c_run_tokenizers).
    r = main("generate", "--checkpoint", d / "run", "--prompt", "日本", "--max-tokens", 5, "--temperature", 0)
    assert r.stdout.startswith("日本") and len(r.stdout) > len("日本\n")
