#!/usr/bin/env bash
# The main job (chapter 7e): set up what it needs, then go from zero to a chat model in about seven
# minutes on a 2-core CPU: a BPE on Jane Austen's novels, pretraining with the speedrun's recipe,
# instruction tuning, a report card; it ends by printing the commands to talk to the model.
#   bash scripts/main.sh [--quick] [STAGE.SECTION.KEY=VALUE ...]     (settings: configs/main.yaml)
# Ctrl-C saves; run it again to continue the newest unfinished run with the same settings.
# The old character-level job is chapter 5h's example: llm-zero train --config configs/default.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh --main
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p experiments/local
# The log keeps every run's lines; tee -i leaves Ctrl-C to the job, which saves before it stops.
llm-zero zero-to-chat --config configs/main.yaml "$@" 2>&1 \
  | tee -i -a experiments/local/zero-to-chat.log
