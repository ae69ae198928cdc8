"""WordPiece speed: llm_zero against Hugging Face `tokenizers`, side by side in one process.

Encode throughput on Tiny Shakespeare (1.1 MB) with the same vocab.txt on both sides, and training time to
the same vocabulary size (llm_zero's likelihood trainer vs Hugging Face's BPE-style WordPieceTrainer; they
learn different vocabularies, so this compares cost, not output). Rounds are interleaved; medians reported.

    .venv/bin/python benchmarks/bench_wordpiece.py [--rounds 5] [--vocab-size 4096]
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from llm_zero.data.corpora import load_text
from llm_zero.tokenizer import WordPieceTokenizer
from llm_zero.tokenizer.wordpiece import BERT_SPECIAL_TOKENS


def hf_tokenizer(vocab=None):
    t = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]") if vocab else models.WordPiece(unk_token="[UNK]"))
    t.normalizer, t.pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    return t


def timed(f):
    t0 = time.perf_counter(); out = f(); return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--vocab-size", type=int, default=4096)
    args = ap.parse_args()
    text = load_text("tinyshakespeare")
    lines = text.splitlines()
    mb = len(text.encode()) / 1e6

    def hf_train():
        t = hf_tokenizer()
        t.train_from_iterator([text], trainers.WordPieceTrainer(vocab_size=args.vocab_size, special_tokens=list(BERT_SPECIAL_TOKENS),
                                                                show_progress=False))
        return t

    times = {k: [] for k in ["train llm_zero", "train HF", "encode llm_zero (cold cache)", "encode llm_zero (warm cache)",
                             "encode HF", "encode_batch HF (lines, all cores)"]}
    for r in range(args.rounds):
        dt, ours = timed(lambda: WordPieceTokenizer.train(text, args.vocab_size)); times["train llm_zero"].append(dt)
        dt, hf_trained = timed(hf_train); times["train HF"].append(dt)
        with tempfile.TemporaryDirectory() as d:  # encode with HF's vocabulary on both sides
            hf_trained.model.save(d)
            vocab_file = Path(d, "vocab.txt")
            fresh = WordPieceTokenizer.from_vocab_file(vocab_file)
            hf = hf_tokenizer(); hf.model = models.WordPiece.from_file(str(vocab_file), unk_token="[UNK]")
        dt, ids = timed(lambda: fresh.encode(text)); times["encode llm_zero (cold cache)"].append(dt)
        dt, _ = timed(lambda: fresh.encode(text)); times["encode llm_zero (warm cache)"].append(dt)
        dt, enc = timed(lambda: hf.encode(text)); times["encode HF"].append(dt)
        dt, _ = timed(lambda: hf.encode_batch(lines)); times["encode_batch HF (lines, all cores)"].append(dt)
        assert ids == enc.ids, "llm_zero and Hugging Face ids differ"
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nTiny Shakespeare, {mb:.2f} MB, vocabulary {args.vocab_size}, {args.rounds} interleaved rounds, medians; "
          f"{len(ids):,} tokens, identical ids")
    for k, v in med.items():
        rate = f"{mb / v:7.2f} MB/s" if k.startswith("encode") else ""
        print(f"  {k:38s} {v:7.3f} s  {rate}")
    print(f"  training:  llm_zero / HF time          = {med['train llm_zero'] / med['train HF']:.2f}x")
    for k in ["encode llm_zero (cold cache)", "encode llm_zero (warm cache)"]:
        print(f"  {k:28s} throughput / HF encode = {med['encode HF'] / med[k]:.2f}")


if __name__ == "__main__":
    main()
