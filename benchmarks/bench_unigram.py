"""Unigram tokenizer benchmark: llm_zero vs the references, side by side in one process.

* training time on TinyShakespeare (1.1 MB, one text per line) vs sentencepiece's unigram trainer,
  and the compression (tokens per byte) of both vocabularies;
* encode throughput vs Hugging Face `tokenizers` (Unigram model + Metaspace pre-tokenizer) with the
  same pieces and scores, ids checked identical.

Rounds alternate between the two sides; medians are reported. Run: python benchmarks/bench_unigram.py
"""
import argparse
import io
import statistics
import time

import sentencepiece as spm
from tokenizers import Tokenizer, models, pre_tokenizers

from llm_zero.data.corpora import load_text
from llm_zero.tokenizer import UnigramTokenizer


def spm_train(lines, vocab_size):
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, vocab_size=vocab_size,
                                   model_type="unigram", bos_id=-1, eos_id=-1, character_coverage=1.0,
                                   normalization_rule_name="identity", remove_extra_whitespaces=False,
                                   num_threads=2, minloglevel=2)
    return spm.SentencePieceProcessor(model_proto=buf.getvalue())


def hf_of(tok):
    hf = Tokenizer(models.Unigram(list(zip(tok.pieces, tok.scores)), unk_id=tok.unk_id, byte_fallback=tok.byte_fallback))
    hf.pre_tokenizer = pre_tokenizers.Metaspace()
    return hf


def timed(f):
    t0 = time.perf_counter(); out = f(); return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, nargs="+", default=[1000, 4000, 8000])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    text = load_text("tinyshakespeare")
    lines = text.splitlines()
    nbytes_lines = sum(len(l.encode()) for l in lines)
    tpb = lambda enc: sum(len(enc(l)) for l in lines) / nbytes_lines
    print(f"TinyShakespeare: {len(text.encode()):,} bytes, {len(lines):,} lines")

    print("\n## Training (one text per line)")
    print(f"{'vocab':>6} {'llm_zero s':>10} {'spm s':>7} {'ratio':>6} {'tok/B ours':>10} {'tok/B spm':>9} {'ratio':>6}")
    trained = {}
    for v in args.vocab:
        ours_t, spm_t = [], []
        for _ in range(args.rounds):
            t, tok = timed(lambda: UnigramTokenizer.train(lines, v)); ours_t.append(t)
            t, sp = timed(lambda: spm_train(lines, v)); spm_t.append(t)
        a, b = tpb(tok.encode), tpb(sp.encode)
        mo, ms = statistics.median(ours_t), statistics.median(spm_t)
        print(f"{v:>6} {mo:>10.2f} {ms:>7.2f} {mo / ms:>6.2f} {a:>10.4f} {b:>9.4f} {a / b:>6.3f}")
        trained[v] = tok

    print("\n## Encode throughput, same pieces and scores (MB/s; ratio = llm_zero / HF)")
    v = max(trained)
    tok = trained[v]
    for name, corpus in [("tinyshakespeare", text), ("python-docs", load_text())]:
        mb = len(corpus.encode()) / 1e6
        assert tok.encode(corpus) == hf_of(tok).encode(corpus).ids, "ids differ"
        cold_o, cold_h, warm_o, warm_h = [], [], [], []
        for _ in range(args.rounds):
            fresh = UnigramTokenizer.from_pieces(list(zip(tok.pieces, tok.scores)))
            cold_o.append(timed(lambda: fresh.encode(corpus))[0]); warm_o.append(timed(lambda: fresh.encode(corpus))[0])
            hf = hf_of(tok)
            cold_h.append(timed(lambda: hf.encode(corpus))[0]); warm_h.append(timed(lambda: hf.encode(corpus))[0])
        for label, o, h in [("first pass", cold_o, cold_h), ("cached", warm_o, warm_h)]:
            o, h = mb / statistics.median(o), mb / statistics.median(h)
            print(f"{name:>16} vocab {v} {label:>10}: llm_zero {o:6.2f} MB/s  HF {h:6.2f} MB/s  ratio {o / h:.2f}")
        batch = corpus.splitlines()
        hf = hf_of(tok)
        tb = statistics.median(timed(lambda: hf.encode_batch(batch))[0] for _ in range(args.rounds))
        print(f"{name:>16} HF encode_batch over lines (2 threads): {mb / tb:6.2f} MB/s")


if __name__ == "__main__":
    main()
