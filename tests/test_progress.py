"""Plain progress off a terminal (issues 19 and 27): a command whose output goes to a pipe or a log
prints a few plain progress lines, never the carriage-return frames of a bar."""
import os
import subprocess
import sys
from pathlib import Path

LLM_ZERO = str(Path(sys.executable).with_name("llm-zero"))

TINY = """
model: {context_length: 32, emb_dim: 32, n_heads: 2, n_layers: 1}
data: {corpus: the-verdict, tokenizer: char}
schedule: {warmup_steps: 2}
train: {max_steps: 300, batch_size: 8, eval_interval: 100, eval_batches: 2}
run: {log_interval: 50, checkpoint_interval: 150, sample_tokens: 0}
"""


def test_train_into_pipes_prints_a_few_plain_progress_lines(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    r = subprocess.run([LLM_ZERO, "train", "--config", tmp_path / "tiny.yaml", "--out",
                        tmp_path / "run"], capture_output=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    # Bytes, not text=True: universal newlines would turn the bar's "\r" into "\n".
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 0, err[-2000:]
    assert "\r" not in out + err
    bar_lines = [line for line in err.split("\n") if "step/s" in line or "s/step" in line]
    assert 1 <= len(bar_lines) <= 11, err
    assert bar_lines[-1].startswith("100% 300/300"), bar_lines
