"""Time the main job (issue 21): `llm-zero zero-to-chat` once, set-up apart, with the machine's load.

Usage: python benchmarks/zero_to_chat_time.py [--quick] [--out DIR] [KEY=VALUE ...]
Prints the load before and after (`uptime`), the wall time, the CPU time of the job (user + sys,
both cores: on an idle machine the wall time approaches a half of it) and each stage's seconds from
the run's stages.json. The numbers go to benchmarks/RESULTS.md by hand ("The main job").
"""
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def main(argv):
    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else None
    print("before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    t0 = time.perf_counter()
    r = subprocess.run(["llm-zero", "zero-to-chat", "--config", "configs/main.yaml", *argv])
    wall = time.perf_counter() - t0
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    print("after: ", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(f"exit {r.returncode}; wall {wall:.0f} s; CPU {use.ru_utime + use.ru_stime:.0f} s")
    runs = [out] if out else sorted(Path("experiments/local").glob("zero-to-chat-*"))[-1:]
    for run in runs:
        stages = json.loads((run / "stages.json").read_text())
        print(run, {k: round(v["seconds"]) for k, v in stages.items()})
    return r.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
