#!/usr/bin/env bash
# The main job: set up (only what it runs), then train a small GPT on the default offline corpus
# (Python's own documentation) and show what it learned. Extra arguments are passed to
# `llm-zero train`, e.g. `bash scripts/main.sh train.max_steps=200`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh --main
export PATH="$PWD/.venv/bin:$PATH"
# A new run folder each time, so the command can be repeated; git ignores experiments/local/.
run="experiments/local/default-$(date +%Y%m%d-%H%M%S)"
llm-zero train --config configs/default.yaml --out "$run" "$@"
cat <<NEXT

Your model is in $run (config, metrics, loss.png, samples, checkpoints).
Next, with .venv/bin on your PATH (source .venv/bin/activate) or as .venv/bin/llm-zero:
  llm-zero generate --checkpoint $run --prompt "The for statement" --temperature 0.8
  llm-zero eval --checkpoint $run
  llm-zero train --config configs/default.yaml --out $run --resume train.max_steps=2000
NEXT
