#!/usr/bin/env bash
# Make a committed base-model folder (like experiments/base-cpu, chapter 5l) from a run folder of
# `llm-zero train`: the newest checkpoint exported in bfloat16 with its SHA256SUMS, beside the
# run's small files (config.yaml, metrics.jsonl/csv, loss.png, samples.txt).
#   bash scripts/commit_base.sh RUN OUT              the run must have reached train.max_steps
#   bash scripts/commit_base.sh --partial RUN OUT    a stand-in from an unfinished run: the
#                                                    metrics and samples are cut at the checkpoint
# OUT may already hold an earlier export and its README.md (kept); nothing is written into RUN.
# Then register the printed digest as BASE_MODEL_SHA256 in nbs/05e_checkpoint.ipynb.
set -euo pipefail
partial=0
if [[ "${1:-}" == "--partial" ]]; then partial=1; shift; fi
if [[ $# -ne 2 ]]; then echo "usage: $0 [--partial] RUN OUT" >&2; exit 2; fi
run=$1 out=$2
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
LLM_ZERO=${LLM_ZERO:-.venv/bin/llm-zero}
ck=$(ls -d "$run"/checkpoints/step-* 2>/dev/null | sort | tail -n 1 || true)
if [[ -z "$ck" ]]; then echo "$run has no checkpoints/step-* folder" >&2; exit 2; fi
# Refuse an unfinished run before writing anything (the checkpoint's step against the config).
"$PY" -c '
import json, sys, yaml
step = json.load(open(sys.argv[1] + "/meta.json"))["step"]
end = yaml.safe_load(open(sys.argv[2] + "/config.yaml"))["train"]["max_steps"]
if sys.argv[3] == "0" and step != end:
    sys.exit(f"{sys.argv[1]} is step {step}, not train.max_steps {end}: wait for the run to end,"
             " or pass --partial for a stand-in")' "$ck" "$run" "$partial"
mkdir -p "$out"
# Only files this script writes, and the folder's README, may be in OUT already.
for f in "$out"/*; do
  [[ -e "$f" ]] || continue
  case $(basename "$f") in
    README.md|SHA256SUMS|model.safetensors|meta.json|tokenizer.json|bpe.txt|config.yaml) ;;
    metrics.jsonl|metrics.csv|loss.png|samples.txt) ;;
    *) echo "$out holds $(basename "$f"), which this script does not write; use a new folder" >&2
       exit 2 ;;
  esac
done
# --force: write beside README.md; the export replaces its own files whole.
"$LLM_ZERO" export --checkpoint "$ck" --format safetensors --out "$out" --force
cp "$run"/config.yaml "$run"/loss.png "$out"/
"$PY" - "$run" "$out" "$partial" <<'EOF'
"""Copy the metrics and samples up to the exported step; refuse a run that stopped early."""
import json, sys
from pathlib import Path

import yaml

run, out, partial = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
step = json.loads((out / "meta.json").read_text())["step"]
rows = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
max_steps = yaml.safe_load((run / "config.yaml").read_text())["train"]["max_steps"]
kept = [r for r in rows if json.loads(r)["step"] <= step]
if not partial and len(kept) != len(rows):
    sys.exit(f"{run}/metrics.jsonl goes past the checkpoint's step {step}")
(out / "metrics.jsonl").write_text("".join(kept))
csv = (run / "metrics.csv").read_text().splitlines(keepends=True)
(out / "metrics.csv").write_text(
    "".join(csv[:1] + [r for r in csv[1:] if int(r.split(",", 1)[0]) <= step]))
blocks = (run / "samples.txt").read_text(encoding="utf-8").split("=== step ")
blocks = [b for b in blocks[1:] if int(b.split(" ===", 1)[0]) <= step]
(out / "samples.txt").write_text("".join("=== step " + b for b in blocks), encoding="utf-8")
print(f"{out}: step {step:,} of {max_steps:,}" + (" (a stand-in: the run goes on)" if partial else ""))
EOF
echo "BASE_MODEL_SHA256 for nbs/05e_checkpoint.ipynb:"
sha256sum "$out"/model.safetensors
