"""The n-gram baseline of chapter 5m: Kneser-Ney models of orders 2 to 5 against the base model.

The tokens are the base run's (experiments/base-cpu): english-mix version 1 under its
tokenizer, split as the run split it. Each order is fitted on the first 90% of the training
split and scored on the rest, which picks the order; then it is fitted on the whole training
split and scores the validation split, on exactly the tokens that `evaluate_text` scores for
the base model, which is evaluated here too. Writes experiments/ngram/results.json (read by
nbs/05m_ngram.ipynb).

Usage: python scripts/ngram_baseline.py   (a few minutes on one core, most of it the base model)
"""

import torch

from llm_zero.eval.ngram import ngram_bits_per_byte
from llm_zero.train import (EXPERIMENTS, base_model_dir, evaluate_text, load_config,
                            load_model_from_checkpoint, load_run_data, split_tokens, write_json)

ORDERS = (2, 3, 4, 5)
DEV_FRACTION = 0.1  # of the training split, held out to choose the order


def main():
    torch.set_num_threads(1)
    base = base_model_dir()
    # tokens rebuilt as in 5l, from the run's data: english-mix version 1 (needs Tiny Shakespeare)
    cfg = load_config(base / "config.yaml", ["data.prepared=null", "data.corpus=english-mix-v1"])
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
    (EXPERIMENTS / "ngram").mkdir(exist_ok=True)
    write_json(EXPERIMENTS / "ngram" / "results.json", out)
    print(f"chosen order {chosen}; wrote {EXPERIMENTS / 'ngram' / 'results.json'}")


if __name__ == "__main__":
    main()
