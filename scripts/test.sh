#!/usr/bin/env bash
# The project's whole test suite. CI (.ci/run) runs exactly this command on a clean clone.
# Usage: bash scripts/test.sh [--dirty]
#   --dirty  test uncommitted work: step 1 then checks only that the notebooks are clean and tagged
#            and that llm_zero/ is what nbdev_export makes of them, not that git has nothing to commit.
set -euo pipefail
cd "$(dirname "$0")/.."
dirty=false
for arg in "$@"; do
  case "$arg" in
    --dirty) dirty=true ;;
    *) echo "usage: bash scripts/test.sh [--dirty]" >&2; exit 2 ;;
  esac
done
start=$SECONDS
step() { printf '\n=== [%ss] %s\n' "$((SECONDS - start))" "$*"; }

snapshot="" pytest_pid=""
cleanup() {
  [ -z "$snapshot" ] || rm -rf "$snapshot"
  [ -z "$pytest_pid" ] || kill -- "-$pytest_pid" 2>/dev/null || true
}
trap cleanup EXIT

step "set-up"
# Let every process cache the modules it compiles (about 15 s of CPU for what the suite imports),
# so that set-up need not compile the whole venv (about 100 s of CPU; scripts/setup_env.sh).
unset PYTHONDONTWRITEBYTECODE
# The data cache first: set-up fetches the registry corpora into it.
export LLM_ZERO_CACHE="${LLM_ZERO_CACHE:-$PWD/.cache/llm_zero}"
bash scripts/setup_env.sh
export PATH="$PWD/.venv/bin:$PATH"
export TIKTOKEN_CACHE_DIR="${TIKTOKEN_CACHE_DIR:-$PWD/.cache/tiktoken}"
export PYTHONHASHSEED=0  # no MPLBACKEND: the book kernels need their inline backend
if [ -d ../shared/data ]; then
  python -c "from llm_zero.data import seed_cache; print('seeded:', *seed_cache('../shared/data'))"
fi

step "1/6 notebooks are clean, tagged, and llm_zero/ is what nbdev_export makes of them"
if $dirty; then
  # Compare the tree before and after the tools run: anything they change was out of step.
  snapshot=$(mktemp -d)
  cp -r nbs llm_zero "$snapshot/"
fi
python scripts/nb_tags.py
nbdev_clean
nbdev_export
if $dirty; then
  if ! changed=$(diff -rq --exclude=__pycache__ --exclude=.ipynb_checkpoints "$snapshot/nbs" nbs &&
                 diff -rq --exclude=__pycache__ "$snapshot/llm_zero" llm_zero); then
    echo "FAIL: nb_tags.py, nbdev_clean or nbdev_export changed these files (now fixed in your tree;"
    echo "      look at them, then run the tests again):"
    echo "$changed"
    exit 1
  fi
elif [ -n "$(git status --porcelain)" ]; then
  echo "FAIL: the working tree changed (or was not clean). Edit notebooks, not llm_zero/; run"
  echo "      nbdev_export, nbdev_clean and python scripts/nb_tags.py, and commit the result"
  echo "      (or run bash scripts/test.sh --dirty to test uncommitted work):"
  git status --porcelain
  exit 1
fi

step "2/6 ruff check (pyproject.toml has the rules; fix llm_zero/ findings in the notebooks)"
ruff check llm_zero tests scripts benchmarks

step "3/6 every notebook runs once: its checks pass, and its outputs are kept for the book"
# The cells nbdev_test would skip (#| slow, #| eval: false) are skipped here too (scripts/nb_tags.py).
python scripts/execute_nbs.py --workers 2

step "4/6 pytest tests/, started now and reported after step 6"
# A worker per core; a module's tests stay on one worker, so its costly fixtures (a fine-tuned
# run, an export) are built once, not once per worker. The modules go out longest first
# (tests/conftest.py's LONGEST_FIRST), not by xdist's count of tests. It runs beside steps 5
# and 6, which leave a core mostly idle (Sphinx and the browser work on one thread and wait on
# pages); its report is printed when it ends. setsid: a failing step 5 or 6 stops it and its
# workers too.
mkdir -p _build
pytest_log=_build/pytest.log
setsid python -m pytest tests -q -n 2 --dist loadscope --no-loadscope-reorder --ignore=tests/browser \
  --durations=15 > "$pytest_log" 2>&1 &
pytest_pid=$!

step "5/6 book: render the notebooks executed in step 3, fail on any Sphinx warning"
# Step 3 stored every executed notebook in _build/.jupyter_cache, where the build finds them.
rm -rf _build/html _build/.doctrees
jupyter-book build . -W -n --keep-going

step "6/6 the built site in a headless browser"
# What a reader would see, kept as CI artifacts: _build/reader_check.json (each page's figures and
# overflows) and _build/site-report/ (screenshots of each chapter's first figure and of each widget
# in use, and the widgets' speeds in widgets.json).
python -m pytest tests/browser -q -rs -p no:cacheprovider

step "4/6 pytest tests/ (its report, kept in $pytest_log)"
status=0
wait "$pytest_pid" || status=$?
pytest_pid=""
cat "$pytest_log"
[ "$status" -eq 0 ] || exit "$status"

step "all checks passed"
