"""Kneser-Ney n-gram baseline (chapter 5m): llm_zero's numpy model vs NLTK, and at full size.

* the same small slice of the base run's training tokens, fitted and scored by llm_zero's
  `KneserNey` and by NLTK's `KneserNeyInterpolated` (order 3, one discount, NLTK's choices), in
  alternating rounds; the log-probabilities are checked equal;
* llm_zero alone on the whole training split (about 4.4M tokens), orders 2 to 5: fit, then score
  the validation split.

Medians of the rounds. Run: python benchmarks/bench_ngram.py [--rounds 3] [--slice 2000]
"""
import argparse
import statistics
import time

import numpy as np
from nltk.lm import KneserNeyInterpolated
from nltk.util import everygrams

from llm_zero.eval.ngram import KneserNey
from llm_zero.train import EXPERIMENTS, load_config, load_run_data


def timed(f):
    t0 = time.perf_counter(); out = f(); return time.perf_counter() - t0, out


def cpu_timed(f):
    "Wall and CPU seconds of `f()`: on a loaded machine the CPU time is the steadier of the two."
    w0, c0 = time.perf_counter(), time.process_time()
    out = f()
    return (time.perf_counter() - w0, time.process_time() - c0), out


def nltk_fit_score(train, score):
    words = [str(t) for t in train]
    lm = KneserNeyInterpolated(3, discount=0.1)
    lm.fit([everygrams(words, max_len=3)], vocabulary_text=words)
    return [lm.logscore(str(score[i]), [str(t) for t in score[i - 2:i]]) for i in range(2, len(score))]


def ours_fit_score(train, score, order=3, discount=(0, 0.1, 0.1)):
    lm = KneserNey(order, 4096, list(discount) if discount else None).fit(train)
    return lm.logprob(score, start=2 if order == 3 else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--slice", type=int, default=2000, help="training tokens for the NLTK race")
    args = ap.parse_args()
    base = EXPERIMENTS / "base-cpu"  # the tokens benchmarks/RESULTS.md was measured on
    data = load_run_data(load_config(base / "config.yaml", ["data.prepared=null"]), base)
    train, val = np.asarray(data.train.ids), np.asarray(data.val.ids)
    # The slice ends with its first two tokens again, so that its opening n-grams have a token
    # before them: NLTK's lower orders differ from the formulas there (tests/test_ngram.py).
    small, probe = np.r_[train[:args.slice], train[:2]], train[:200]
    ours_t, nltk_t = [], []
    for _ in range(args.rounds):
        t, a = timed(lambda: ours_fit_score(small, probe)); ours_t.append(t)
        t, b = timed(lambda: nltk_fit_score(small, probe)); nltk_t.append(t)
    np.testing.assert_allclose(a / np.log(2), b, rtol=1e-9)  # NLTK's logscore is in bits
    o, n = statistics.median(ours_t), statistics.median(nltk_t)
    print(f"order 3, {len(small):,} tokens, score {len(probe) - 2}: llm_zero {o * 1e3:.1f} ms, "
          f"NLTK {n:.2f} s ({n / o:,.0f}x)")
    print(f"\nfull training split ({len(train):,} tokens), validation split "
          f"({len(val):,} tokens), modified Kneser-Ney")
    for order in (2, 3, 4, 5):
        fits, scores = [], []
        for _ in range(args.rounds):
            t, lm = cpu_timed(lambda: KneserNey(order, 4096).fit(train)); fits.append(t)
            t, _ = cpu_timed(lambda: lm.logprob(val)); scores.append(t)
        med = lambda ts, i: statistics.median(t[i] for t in ts)
        print(f"order {order}: fit {med(fits, 0):.1f} s wall ({med(fits, 1):.1f} s CPU), "
              f"score {med(scores, 0):.1f} s wall ({med(scores, 1):.1f} s CPU)")


if __name__ == "__main__":
    main()
