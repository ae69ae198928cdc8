"""The n-gram baseline of chapter 5m: Kneser-Ney models of orders 2 to 5 against the base model.

The tokens are a base run's (by default experiments/base-cpu: english-mix version 1) under its
tokenizer, split as the run split it. Each order is fitted on the first 90% of the training
split and scored on the rest, which picks the order; then it is fitted on the whole training
split and scores the validation split, on exactly the tokens that `evaluate_text` scores for
the base model, which is evaluated here too. Writes experiments/ngram/results.json by default (read by
nbs/05m_ngram.ipynb).

Usage: python scripts/ngram_baseline.py [--base FOLDER --corpus NAME --out FILE]
(a few minutes on one core). The second base (issue 20), on english-mix version 2:
    python scripts/ngram_baseline.py --base experiments/base-2core --corpus english-mix \\
        --out experiments/ngram/results-base-2core.json
"""

import argparse
from pathlib import Path

import torch

from llm_zero.eval.ngram import ngram_bits_per_byte
from llm_zero.train import (EXPERIMENTS, evaluate_text, load_config, load_model_from_checkpoint,
                            load_run_data, split_tokens, verify_checksums, write_json)

ORDERS = (2, 3, 4, 5)
DEV_FRACTION = 0.1  # of the training split, held out to choose the order


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, default=EXPERIMENTS / "base-cpu",
                    help="committed base folder (default: chapter 5l's first base)")
    ap.add_argument("--corpus", default="english-mix-v1",
                    help="the corpus the base was trained on (default: english-mix-v1)")
    ap.add_argument("--out", type=Path, default=EXPERIMENTS / "ngram" / "results.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = args.base
    verify_checksums(base)
    # tokens rebuilt from the run's data and tokenizer, split as the run split them
    cfg = load_config(base / "config.yaml", ["data.prepared=null", f"data.corpus={args.corpus}"])
    data = load_run_data(cfg, base)
    train, val, tok = data.train.ids, data.val.ids, data.tokenizer
    fit_part, dev = split_tokens(train, DEV_FRACTION)
    model, _, _ = load_model_from_checkpoint(base)
    transformer = evaluate_text(model, tok, ids=val)
    scored = val[:transformer["tokens"] + 1]  # the first token is context only, in both
    print(f"base model: {transformer['bits_per_byte']:.4f} bits per byte on "
          f"{transformer['tokens']:,} validation tokens", flush=True)
    rows = []
    for order in ORDERS:
        dev_r = ngram_bits_per_byte(fit_part, dev, tok, order)
        r = ngram_bits_per_byte(train, scored, tok, order)
        assert (r["tokens"], r["bytes"]) == (transformer["tokens"], transformer["bytes"])
        rows.append({**r, "dev_bits_per_byte": dev_r["bits_per_byte"]})
        print(f"{order}-gram: held-out training text {dev_r['bits_per_byte']:.4f}, "
              f"validation {r['bits_per_byte']:.4f} bits per byte", flush=True)
    chosen = min(rows, key=lambda r: r["dev_bits_per_byte"])["order"]
    out = {"corpus": cfg.data.corpus, "tokenizer": f"experiments/{base.name}/tokenizer.json",
           "train_tokens": len(train), "dev_tokens": len(dev), "fit_tokens": len(fit_part),
           "discount": "modified Kneser-Ney, estimated", "chosen_order": chosen,
           "ngram": rows, "transformer": {k: transformer[k] for k in
                                          ("loss", "bits_per_byte", "tokens", "bytes")}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, out)
    print(f"chosen order {chosen}; wrote {args.out}")


if __name__ == "__main__":
    main()
