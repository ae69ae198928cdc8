#!/usr/bin/env bash
# The project's whole test suite. CI (.ci/run) runs exactly this command on a clean clone.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
step() { printf '\n=== [%ss] %s\n' "$((SECONDS - start))" "$*"; }

step "set-up"
bash scripts/setup_env.sh
export PATH="$PWD/.venv/bin:$PATH"
export LLM_ZERO_CACHE="${LLM_ZERO_CACHE:-$PWD/.cache/llm_zero}"
export TIKTOKEN_CACHE_DIR="${TIKTOKEN_CACHE_DIR:-$PWD/.cache/tiktoken}"
export PYTHONHASHSEED=0  # no MPLBACKEND: the book kernels need their inline backend
if [ -d ../shared/data ]; then
  python -c "from llm_zero.data import seed_cache; print('seeded:', *seed_cache('../shared/data'))"
fi

step "1/5 notebooks are clean, tagged, and llm_zero/ is what nbdev_export makes of them"
python scripts/nb_tags.py
nbdev_clean
nbdev_export
if [ -n "$(git status --porcelain)" ]; then
  echo "FAIL: the working tree changed (or was not clean). Edit notebooks, not llm_zero/; run"
  echo "      nbdev_export, nbdev_clean and python scripts/nb_tags.py, and commit the result:"
  git status --porcelain
  exit 1
fi

step "2/5 nbdev_test (cells flagged #| slow are skipped; --flags slow runs them)"
nbdev_test --n_workers 2 --timing

step "3/5 pytest tests/"
python -m pytest tests -q --ignore=tests/browser --durations=15

step "4/5 book: execute every notebook, fail on any cell error or Sphinx warning"
rm -rf _build/html _build/.doctrees
jupyter-book build . -W -n --keep-going

step "5/5 the built site in a headless browser"
python -m pytest tests/browser -q -rs

step "all checks passed"
