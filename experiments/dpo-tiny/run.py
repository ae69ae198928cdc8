"""The full DPO run that chapter 7c shows: chapter 7's instruction fine-tuning of the tiny llm_zero GPT (all 935
training records, 2 epochs, as in experiments/finetune-tiny), then `finetune_dpo` from it with the pairs of the
chapter's rule. Run from the repository root:
    python experiments/dpo-tiny/run.py [THREADS [SFT_RUN_FOLDER [PAIRS_JSON]]]
(about 15-30 min on a quiet 2-core machine; with SFT_RUN_FOLDER, an existing `finetune instruct` run is reused
instead of trained; with PAIRS_JSON, the pairs.json an earlier run made from that same model is reused).

Writes results.json, dpo.png, pairs.json and test-answers.json next to this file (checkpoints stay in a scratch folder)."""
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from llm_zero.finetune.cli import InstructConfig, finetune_instruct
from llm_zero.finetune.dpo import DPOConfig, finetune_dpo
from llm_zero.train.config import load_config

HERE = Path(__file__).resolve().parent
SFT = ["train.lr=1e-3", "train.epochs=2", "train.eval_freq=25", "generate.max_new_tokens=64"]
DPO = ["data.max_pairs=320", "train.lr=5e-5", "train.epochs=1", "train.beta=0.1", "train.eval_freq=8",
       "train.eval_iter=2"]
KEEP = {"dpo.png", "pairs.json", "test-answers.json", "scores.json", "metrics.json", "config.yaml"}

if __name__ == "__main__":
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    with tempfile.TemporaryDirectory() as scratch:
        t = time.time()
        sft = sys.argv[2] if len(sys.argv) > 2 else None
        if sft is None:
            sft = Path(scratch) / "sft"
            finetune_instruct(load_config(None, ["model.base=tiny-gpt", *SFT], InstructConfig), sft,
                              progress=False)
        out = Path(scratch) / "dpo"
        if len(sys.argv) > 3:
            out.mkdir()
            shutil.copy2(sys.argv[3], out / "pairs.json")
        scores = finetune_dpo(load_config(None, [f"model.sft={sft}", *DPO], DPOConfig), out, progress=False)
        scores.pop("checkpoint")
        results = {"sft_overrides": SFT, "dpo_overrides": DPO, "wall_s": round(time.time() - t, 1), **scores}
        for f in out.iterdir():
            if f.name in KEEP: shutil.copy2(f, HERE / f.name)
        (HERE / "results.json").write_text(json.dumps(results, indent=1))
        print(json.dumps(results, indent=1))
