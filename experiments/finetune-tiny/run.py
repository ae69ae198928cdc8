"""Fuller fine-tuning runs from the tiny llm_zero-pretrained GPT (no network needed), whose results chapters 6, 7 and
appendix E show. Run from the repository root:  python experiments/finetune-tiny/run.py [THREADS [RUN ...]]
(all runs: about 10-20 min on 2 cores).

Writes results.json and the runs' plots/responses next to this file (checkpoints go to a scratch folder, not the repo)."""
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from llm_zero.finetune.cli import ClassifyConfig, InstructConfig, finetune_classify, finetune_instruct
from llm_zero.train.config import load_config

HERE = Path(__file__).resolve().parent
RUNS = {
    # name: (runner, config class, overrides)
    "classify-all-blocks": (finetune_classify, ClassifyConfig, ["model.trainable_blocks=-1", "train.lr=1e-3", "train.epochs=5"]),
    "classify-last-block": (finetune_classify, ClassifyConfig, ["model.trainable_blocks=1", "train.lr=1e-3", "train.epochs=5"]),
    "classify-lora-r8": (finetune_classify, ClassifyConfig, ["lora.rank=8", "lora.alpha=16", "train.lr=5e-3", "train.epochs=5"]),
    "instruct": (finetune_instruct, InstructConfig, ["train.lr=1e-3", "train.epochs=2", "train.eval_freq=25",
                                                        "generate.max_new_tokens=64"]),
    "instruct-masked": (finetune_instruct, InstructConfig, ["train.lr=1e-3", "train.epochs=2", "train.eval_freq=25",
                                                               "generate.max_new_tokens=64", "data.mask_instruction=true"]),
}
KEEP = {"metrics.json", "scores.json", "accuracy.png", "test-responses.json", "config.yaml"}

if __name__ == "__main__":
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    wanted = sys.argv[2:] or list(RUNS)
    results_file = HERE / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in wanted:
            runner, cls, overrides = RUNS[name]
            t = time.time()
            out = Path(scratch) / name
            r = runner(load_config(None, ["model.base=tiny-gpt", *overrides], cls), out, progress=False)
            r.pop("checkpoint", None)
            results[name] = {"overrides": overrides, "wall_s": round(time.time() - t, 1),
                             **{k: v for k, v in r.items() if not isinstance(v, list)}}
            (HERE / name).mkdir(exist_ok=True)
            for f in out.iterdir():
                if f.name in KEEP: shutil.copy2(f, HERE / name / f.name)
            print(name, json.dumps(results[name]), flush=True)
            results_file.write_text(json.dumps(results, indent=1))
