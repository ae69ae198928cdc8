#!/usr/bin/env bash
# The main job: set up, then build the book into _build/html (until the training engine lands).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export PATH="$PWD/.venv/bin:$PATH"
jupyter-book build . -W -n --keep-going
echo "Open $PWD/_build/html/index.html in a browser."
