"""Judge a run's samples against issue 20's goals for a base model (chapter 5l, section 5l.10).

Draws N samples at temperature 0.8 (no top-k), from fixed seeds and the given prompts, and scores
each continuation: the share of its words in english-mix's training dictionary, the genre (source
of the mix) of each 30-word segment, and whether it switches genre. Prints one line per sample and
the summary; with --out, writes everything as JSON (bare --out: RUN_FOLDER/samples-judged.json).

Usage: python scripts/judge_samples.py RUN_FOLDER [--n 20] [--tokens 100] [--prompts P ...]
       [--temperature 0.8] [--seed 0] [--mix-version 2] [--out [PATH]] [--threads N]
"""

import argparse
import json
import sys
import time
from pathlib import Path

from llm_zero.core import LLMZeroError, atomic_write
from llm_zero.data.english import MIX_VERSION
from llm_zero.eval.samples import MARGIN, PROMPTS, judge_samples, mix_documents, mix_judges
from llm_zero.train.checkpoint import load_language_model
from llm_zero.train.engine import add_threads_option, use_threads

OUT_NAME = "samples-judged.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a run folder (or checkpoint) of a model that writes text")
    p.add_argument("--n", type=int, default=20, help="samples to draw (default 20)")
    p.add_argument("--tokens", type=int, default=100, help="new tokens per sample (default 100)")
    p.add_argument("--prompts", nargs="+", default=list(PROMPTS),
                   help="sample i continues prompt i modulo their number (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.8, help="default 0.8, issue 20's")
    p.add_argument("--seed", type=int, default=0, help="sample i uses seed SEED + i (default 0)")
    p.add_argument("--margin", type=float, default=MARGIN,
                   help=f"nats of log-odds for a confident segment (default {MARGIN})")
    p.add_argument("--mix-version", type=int, default=MIX_VERSION,
                   help=f"english-mix version of the dictionary and genres (default {MIX_VERSION})")
    p.add_argument("--out", nargs="?", const="", default=None, metavar="PATH",
                   help=f"write the JSON here (bare --out: RUN_FOLDER/{OUT_NAME})")
    add_threads_option(p)
    return p


def sample_lines(judged: dict) -> list[str]:
    "One line per sample: prompt, word share, segment genres, switch, the text's start."
    lines = []
    for i, s in enumerate(judged["samples"]):
        flag = "SWITCH" if s["switch"] else "      "
        start = " ".join(s["text"].split())[:60]
        lines.append(f"{i:3} {s['words']:6.1%} {flag} {'/'.join(s['labels']):40} "
                     f"{s['prompt']!r} -> {start}")
    return lines


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        use_threads(args.threads)
        t0 = time.perf_counter()
        model, tok, _ = load_language_model(args.run)
        words, clf = mix_judges(mix_documents(args.mix_version))
        judged = judge_samples(model, tok, words, clf, args.prompts, args.n, args.tokens,
                               args.temperature, args.seed, args.margin)
    except LLMZeroError as e:
        print(f"judge_samples: {e}", file=sys.stderr)
        return 2
    s = judged["summary"]
    s |= {"run": str(args.run), "mix_version": args.mix_version, "prompts": args.prompts,
          "seed": args.seed, "seconds": round(time.perf_counter() - t0, 1)}
    print("\n".join(sample_lines(judged)))
    print(f"{args.run}: {s['words']:.1%} dictionary words (goal >= 96%), "
          f"{s['switch_share']:.0%} of {s['n']} samples switch genre (goal 0), "
          f"{s['tokens']} tokens at T={s['temperature']}, english-mix v{args.mix_version}")
    if args.out is not None:
        out = Path(args.out) if args.out else Path(args.run) / OUT_NAME
        with atomic_write(out) as tmp:
            tmp.write_text(json.dumps(judged, indent=1), encoding="utf-8")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
