"""Fine-tuning runs from the committed base model, whose results chapters 6, 7 and appendix E show.
The base is the library's (experiments/base-2core since issue 20; the runs from the first base,
experiments/base-cpu, are kept in results-base-cpu.json). Run from the repository root (a trial
names its RUN first: --set and --val-epochs take every word after them):

    python experiments/finetune-base/run.py [--base PATH] [--threads N] [RUN ...]
    python experiments/finetune-base/run.py RUN --trial NAME [--set KEY=VALUE ...] [--val-epochs E ...]

writes results.json and each run's small files (metrics, plots, test responses, config) next to this
file; checkpoints go to a scratch folder (--keep DIR: to DIR/RUN, kept). --set KEY=VALUE ... adds
overrides (recorded with the results). With --trial NAME it instead appends one line per run to
trials.jsonl (a settings trial) and keeps no files. --base PATH fine-tunes another base (a run or
checkpoint folder); the default is the committed base, found by the library (`model.base: null`).

An instruction run also answers the 55 validation records (greedily, as the test records are
answered) and records their ROUGE-L, `validation_rouge_l`, so that settings are chosen on the
validation split by the same measure the test split reports. --val-epochs E ... (trials) saves a
checkpoint after every epoch and records the validation ROUGE-L after each epoch E: the learning
rate is constant and each epoch's order depends only on (seed, epoch), so the model after epoch E
of a longer run is the model of an E-epoch run.
"""
import argparse
import fcntl
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from llm_zero.core import atomic_write
from llm_zero.data.corpora import sha256_file
from llm_zero.data.dataset import instruction_splits
from llm_zero.eval.report import score_responses
from llm_zero.model.gpt import to_classifier
from llm_zero.finetune.cli import (ClassifyConfig, InstructConfig, epoch_order, finetune_classify,
                                   finetune_instruct, load_base)
from llm_zero.finetune.instruct import generate_responses
from llm_zero.train.checkpoint import CheckpointManager, base_model_dir, find_checkpoint, load_language_model
from llm_zero.train.config import load_config

HERE = Path(__file__).resolve().parent
CONFIGS = HERE.parents[1] / "configs"
# Every run starts from the committed config of its command, which holds the settings chosen on the
# validation split by the trials in trials.jsonl (see README.md); a run lists only how it differs.
RUNS = {
    # name: (runner, config class, config file, overrides)
    "classify-last-block": (finetune_classify, ClassifyConfig, "finetune_classify.yaml",
                            ["lora.rank=null", "train.lr=2e-3"]),
    "classify-all-blocks": (finetune_classify, ClassifyConfig, "finetune_classify.yaml",
                            ["lora.rank=null", "model.trainable_blocks=-1", "train.lr=1e-3"]),
    "classify-lora-r8": (finetune_classify, ClassifyConfig, "finetune_classify.yaml", []),
    "instruct": (finetune_instruct, InstructConfig, "finetune_instruct.yaml",
                 ["data.mask_instruction=false"]),
    "instruct-masked": (finetune_instruct, InstructConfig, "finetune_instruct.yaml", []),
}
KEEP = {"metrics.json", "scores.json", "accuracy.png", "loss.png", "test-responses.json", "config.yaml"}


def base_summary(base) -> dict:
    "What a run started from: the base's folder, its weights' SHA-256 and parameter counts."
    model, _ = load_base(base)
    ck = find_checkpoint(base or base_model_dir())
    return {"base": str(base) if base else f"committed (experiments/{base_model_dir().name})",
            "base_sha256": sha256_file(ck / "model.safetensors"),
            "base_parameters": sum(p.numel() for p in model.parameters()),
            # the 2-class model's own weights: the denominator of a trained share
            "classifier_parameters": sum(p.numel() for p in to_classifier(model).parameters())}


def validation_rouge_l(checkpoint, cfg: InstructConfig) -> float:
    "Mean ROUGE-L of a checkpoint's greedy answers to the validation records (as the test's)."
    model, tok, _ = load_language_model(checkpoint)
    _, val_d, _ = instruction_splits(cfg.data.path, cfg.data.limit)
    answered = generate_responses(model, val_d, tok, max_new_tokens=cfg.generate.max_new_tokens,
                                  eos_id=tok.eos_id)
    return score_responses(answered)["rouge_l"]


def epochs_overrides(cfg: InstructConfig, epochs: list[int]) -> list[str]:
    "Overrides that save (and keep) a checkpoint after every epoch of an instruction run."
    if not epochs:
        return []
    n_train = len(instruction_splits(cfg.data.path, cfg.data.limit)[0])
    per_epoch, _ = epoch_order(n_train, cfg.data.batch_size, cfg.train.seed)
    return [f"run.checkpoint_interval={per_epoch}", f"run.keep_last={cfg.train.epochs}"]


def validation_scores(out: Path, cfg: InstructConfig, epochs: list[int]) -> dict:
    "validation_rouge_l of the final model, and by epoch for the epochs asked."
    steps = CheckpointManager(out / "checkpoints").steps()
    per_epoch = int(steps[-1].name.split("-")[1]) // cfg.train.epochs
    by_step = {int(p.name.split("-")[1]): p for p in steps}
    scores = {e: validation_rouge_l(by_step[e * per_epoch], cfg)
              for e in sorted({*epochs, cfg.train.epochs})}
    row = {"validation_rouge_l": scores[cfg.train.epochs]}
    return {**row, "validation_rouge_l_by_epoch": scores} if epochs else row


def record(name: str, row: dict):
    "Set results.json[name] = row; a lock lets two processes (one thread each) share the file."
    with open(HERE / ".results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = HERE / "results.json"
        results = json.loads(path.read_text()) if path.exists() else {}
        with atomic_write(path) as tmp: tmp.write_text(json.dumps({**results, name: row}, indent=1) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", metavar="RUN", help=f"runs to do (default all): {', '.join(RUNS)}")
    ap.add_argument("--base", help="base model folder (default: the committed base)")
    ap.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (default 1)")
    ap.add_argument("--trial", metavar="NAME", help="record a settings trial in trials.jsonl instead")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="extra overrides, e.g. for a trial (recorded with the results)")
    ap.add_argument("--keep", metavar="DIR", help="keep the runs' checkpoints in DIR/RUN")
    ap.add_argument("--val-epochs", nargs="*", type=int, default=[], metavar="E",
                    help="instruction trials: also the validation ROUGE-L after these epochs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = base_summary(args.base)
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.runs or list(RUNS):
            runner, cls, config, overrides = RUNS[name]
            overrides = [*overrides, *args.set]
            base_key = [f"model.base={args.base}"] if args.base else []
            cfg = load_config(CONFIGS / config, [*overrides, *base_key], cls)
            saves = epochs_overrides(cfg, args.val_epochs) if runner is finetune_instruct else []
            cfg = load_config(CONFIGS / config, [*overrides, *base_key, *saves], cls)
            t = time.time()
            out = Path(args.keep or scratch) / name
            r = runner(cfg, out, progress=False)
            wall = round(time.time() - t, 1)  # the run's own time, as the command takes it
            r.pop("checkpoint", None); r.pop("run_dir", None)
            row = {"config": f"configs/{config}", "overrides": overrides, "threads": args.threads, "wall_s": wall, **base,
                   **{k: v for k, v in r.items() if not isinstance(v, list)}}
            if runner is finetune_instruct:
                t = time.time()
                row = {**row, **({"checkpoint_overrides": saves} if saves else {}),
                       **validation_scores(out, cfg, args.val_epochs),
                       "validation_scoring_s": round(time.time() - t, 1)}
            if args.trial:
                keep = ("val_accs", "train_accs") if "accuracy" in r else ("val_losses",)
                row = {"trial": args.trial, "run": name, **row, **{k: r[k] for k in keep}}
                with open(HERE / "trials.jsonl", "a") as f: f.write(json.dumps(row) + "\n")
            else:
                (HERE / name).mkdir(exist_ok=True)
                for f in out.iterdir():
                    if f.name in KEEP: shutil.copy2(f, HERE / name / f.name)
                record(name, row)
            print(name, json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
