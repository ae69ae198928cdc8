"""Chapter 7c's DPO on the committed base's instruction model: `finetune_dpo` from an existing
`llm-zero finetune instruct` run of experiments/finetune-base (the SFT model, also the frozen
reference), with the pairs of the chapter's rule. Run from the repository root:

    python experiments/dpo-base/run.py --sft RUN_OR_CHECKPOINT [--pairs PAIRS_JSON] [--threads N]
        [--set KEY=VALUE ...] [--trial NAME] [--keep DIR]

writes results.json, dpo.png, pairs.json, test-answers.json, scores.json, metrics.json and
config.yaml next to this file (checkpoints go to a scratch folder; --keep DIR: to DIR, kept).
--pairs reuses the pairs.json an earlier run made from the same SFT weights (making them means
answering all 990 training and validation prompts). --set adds overrides to the settings below.
Every run appends one line to trials.jsonl (named by --trial NAME, else "final"); with --trial
NAME it keeps no other files (a settings trial).

Besides the test judging that `finetune_dpo` does (110 items), the DPO model is judged against the
SFT model on the 55 validation records by the same judge with the same answer length
(`validation_preference_dpo_vs_sft`), so that settings are chosen on the validation split.
"""
import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from llm_zero.data.corpora import sha256_file
from llm_zero.data.dataset import instruction_splits
from llm_zero.eval.report import generate_answers
from llm_zero.finetune.dpo import DPOConfig, compare_models, finetune_dpo
from llm_zero.train.checkpoint import CheckpointManager, find_checkpoint, load_language_model
from llm_zero.train.config import load_config

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parents[1] / "configs" / "finetune_dpo.yaml"
# The settings are configs/finetune_dpo.yaml's, chosen on validation by the trials in trials.jsonl
# (their rows list every setting they changed; the first ones started from experiments/dpo-tiny's;
# until the eighth session this list held data.max_pairs=320, the first trials' pair count).
DPO = []
KEEP = {"dpo.png", "pairs.json", "test-answers.json", "scores.json", "metrics.json", "config.yaml"}


def validation_preference(out: Path, cfg: DPOConfig) -> dict:
    "The judge's verdicts on the DPO model's validation answers against the SFT model's."
    _, val_d, _ = instruction_splits(cfg.data.path, cfg.data.limit)
    answers = {}
    for name, path in (("sft", cfg.model.sft), ("dpo", CheckpointManager(out / "checkpoints").latest())):
        model, tok, _ = load_language_model(path)
        eos = getattr(tok, "eos_id", None) or 50256  # as finetune_dpo answers the test records
        answers[name] = generate_answers(model, val_d, tok, cfg.generate.max_new_tokens, eos_id=eos)
    return compare_models(answers["dpo"], answers["sft"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sft", required=True, help="the instruction run (or checkpoint) to start from")
    ap.add_argument("--pairs", help="a pairs.json made earlier from the same SFT weights")
    ap.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (default 1)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides to DPO's")
    ap.add_argument("--trial", metavar="NAME", help="a settings trial: only its line in trials.jsonl")
    ap.add_argument("--keep", metavar="DIR", help="the run folder to keep (checkpoints, pairs)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    overrides = [*DPO, *args.set]
    cfg = load_config(CONFIG, [*overrides, f"model.sft={args.sft}"], DPOConfig)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.keep or Path(scratch) / "dpo")
        if args.pairs:
            out.mkdir(parents=True)
            shutil.copy2(args.pairs, out / "pairs.json")
        t = time.time()
        scores = finetune_dpo(cfg, out, progress=False)
        wall = round(time.time() - t, 1)
        scores.pop("checkpoint"), scores.pop("run_dir")
        t = time.time()
        row = {"sft_run": args.sft, "sft_sha256": sha256_file(find_checkpoint(args.sft) / "model.safetensors"),
               "overrides": overrides, "threads": args.threads, "wall_s": wall,
               "pairs_reused": bool(args.pairs), **scores,
               "validation_preference_dpo_vs_sft": validation_preference(out, cfg),
               "validation_judging_s": round(time.time() - t, 1)}
        with open(HERE / "trials.jsonl", "a") as f:
            f.write(json.dumps({"trial": args.trial or "final", **row}) + "\n")
        if not args.trial:
            for f in out.iterdir():
                if f.name in KEEP:
                    shutil.copy2(f, HERE / f.name)
            (HERE / "results.json").write_text(json.dumps(row, indent=1) + "\n")
        print(json.dumps(row, indent=1), flush=True)


if __name__ == "__main__":
    main()
