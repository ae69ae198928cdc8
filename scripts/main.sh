#!/usr/bin/env bash
# The main job: set up, then train a small GPT on the default offline corpus (Python's own
# documentation) and show what it learned. Extra arguments are passed to `llm-zero train`,
# e.g. `bash scripts/main.sh train.max_steps=200`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export PATH="$PWD/.venv/bin:$PATH"
# A new run folder each time, so the command can be repeated; resume one with
# `llm-zero train --config configs/default.yaml --out experiments/<run> --resume`.
llm-zero train --config configs/default.yaml --out "experiments/default-$(date +%Y%m%d-%H%M%S)" "$@"
