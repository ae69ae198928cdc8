"""`llm-zero eval --checkpoint experiments/base-cpu --corpus english-mix --max-tokens 20000`
on a cold cache (issue 26): the whole command in a fresh process, on a data cache that holds
only what set-up leaves there (the registries' package files and austen.txt), against the
same command on a warm cache (the validation text already built) and, as the baseline,
version 1's path: `--corpus english-mix-v1` on a cold cache, which builds the whole mix and
tokenizes all of it before it knows where the validation tokens are (what every english-mix
eval did before version 2; it needs tinyshakespeare.txt in the cache). Rounds are
interleaved; medians are reported, as wall and CPU seconds of the child process.
With `--before REV`, the same cold command also runs on the package as it was at git revision
REV (extracted with `git archive`), interleaved with today's: a before/after of a speed-up.
Not a test: run by hand, copy the output into benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/bench_eval_split.py [--rounds 3] [--no-baseline] [--before REV]
"""
import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llm_zero.data.corpora import CORPORA, cache_dir

ROOT = Path(__file__).resolve().parents[1]
SET_UP = ["npm", "apt", "austen.txt"]  # what set-up leaves in the cache for english-mix
# The command, then (on Linux) the nanoseconds its threads waited for a core that another process
# held: the second field of each thread's /proc schedstat. Wall time less that wait estimates the
# wall time on a quiet machine, which a shared one never is (eval runs one PyTorch thread).
CLI = """import atexit, glob, sys
def waited():
    ns = sum(int(open(f).read().split()[1]) for f in glob.glob("/proc/self/task/*/schedstat"))
    print(f"waited {ns / 1e9}", file=sys.stderr)
atexit.register(waited)
from llm_zero.cli import main
sys.exit(main(sys.argv[1:]))"""


def run_eval(cache: Path, corpus: str, src: Path = ROOT) -> tuple[float, float, float, str]:
    """Wall, CPU and waited-for-a-core seconds of one `eval` in a new process on `cache`, and
    its output; `src` holds the package that runs (`python -c` imports it from the working
    folder). The wait is 0 where /proc has no schedstat."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-c", CLI, "eval", "--checkpoint", str(ROOT / "experiments/base-cpu"),
         "--corpus", corpus, "--max-tokens", "20000"],
        cwd=src, env={**os.environ, "LLM_ZERO_CACHE": str(cache), "PYTHONPATH": str(src)},
        capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        sys.exit(r.stderr)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    waits = [float(x.split()[1]) for x in r.stderr.splitlines() if x.startswith("waited ")]
    return wall, cpu, sum(waits), r.stdout.strip()


def fresh_cache(root: Path, extra: list[str]) -> Path:
    "A data cache as set-up leaves it (plus `extra` files), in a new folder under `root`."
    cache = Path(tempfile.mkdtemp(dir=root))
    for name in [*SET_UP, *extra]:
        src = cache_dir() / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, cache / name)
    return cache


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--before", metavar="REV", help="also run the package of git revision REV")
    args = ap.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load {os.getloadavg()}")
    shakespeare = [CORPORA["tinyshakespeare"].filename]
    cases = {"cold: english-mix (version 2)": ("english-mix", [], True, ROOT),
             "warm: english-mix (validation text built)": ("english-mix", [], False, ROOT)}
    if not args.no_baseline:
        cases["cold: english-mix-v1 (version 1's path)"] = (
            "english-mix-v1", shakespeare, True, ROOT)
    times, lines = {name: [] for name in cases}, {}
    with tempfile.TemporaryDirectory() as d:
        if args.before:
            old = Path(d) / "before"
            old.mkdir()
            archive = subprocess.run(["git", "archive", args.before, "llm_zero"], cwd=ROOT,
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
            name = f"cold: english-mix (version 2), the package at {args.before}"
            cases[name], times[name] = ("english-mix", [], True, old), []
        warm = fresh_cache(Path(d), [])
        run_eval(warm, "english-mix")  # builds the validation text once
        for _ in range(args.rounds):
            for name, (corpus, extra, cold, src) in cases.items():
                cache = fresh_cache(Path(d), extra) if cold else warm
                wall, cpu, waited, lines[name] = run_eval(cache, corpus, src)
                times[name].append((wall, cpu, wall - waited))
                if cold:
                    shutil.rmtree(cache)
    for name, runs in times.items():
        walls, cpus, quiet = ([r[k] for r in runs] for k in range(3))
        each = ", ".join(f"{w:.1f}" for w in walls)
        print(f"{name}: median {statistics.median(walls):.1f} s wall, "
              f"{statistics.median(cpus):.1f} s CPU, {statistics.median(quiet):.1f} s wall less "
              f"the waits for a core (walls {each}; less the waits "
              f"{', '.join(f'{q:.1f}' for q in quiet)})")
        print(f"  {lines[name]}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
