"""Execute every notebook once, in parallel, and keep the outputs for the book.

The notebooks' own checks (the cells after each definition) run here, in a Jupyter kernel, exactly
as the book build would run them: the same executor (jupyter-cache's `single_nb_execution`, which
myst-nb calls), the same working folder and timeout, and the cells tagged `skip-execution`
(`#| slow`, `#| eval: false`, mirrored by scripts/nb_tags.py) left out; the `#|` comment lines
are dropped first, as the book's extension (_ext/llm_zero_book.py) drops them. Each executed notebook is
stored in the book's jupyter-cache (`_build/.jupyter_cache`, keyed by a hash of its code cells), so
`jupyter-book build` (`execute_notebooks: cache` in _config.yml) renders these outputs instead of
running every notebook a second time. A notebook edited afterwards no longer matches its entry,
and the book build executes it again.

Two notebooks run at a time, one per core, each kernel with one thread: most cells are short and
run on one thread anyway, so a second notebook keeps the second core busier than a second thread.

Usage: python scripts/execute_nbs.py [--workers N] [NOTEBOOK ...]   (default: every notebook in nbs/)
Exits 1 when a notebook fails, after printing each failure's traceback.
"""
import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import nbformat
import yaml
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from jupyter_cache.executors.utils import single_nb_execution

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "_ext"))
from llm_zero_book import reader_cell  # noqa: E402  (the book's own reading of a notebook)

CACHE = ROOT / "_build" / ".jupyter_cache"  # where myst-nb looks when _config.yml names none


def read_as_the_book(path) -> nbformat.NotebookNode:
    """The notebook as the book build sees it (`#|` lines dropped, reader tags added), so that
    its cache key is the one myst-nb looks up."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            reader_cell(cell)
    return nb


def execute(path: str, timeout: int) -> tuple:
    "Run one notebook in its own folder; (path, seconds, executed notebook or None, traceback)."
    nb = read_as_the_book(path)
    result = single_nb_execution(
        nb, cwd=str(Path(path).parent), timeout=timeout, allow_errors=False, meta_override=True
    )
    return path, result.time, (None if result.err else nb), result.exc_string


def expected_seconds(cache, path: Path) -> float:
    "The last recorded run time of this notebook, so the slowest start first; else its size."
    try:
        record = cache.match_cache_notebook(read_as_the_book(path))
        return record.data.get("execution_seconds", 0.0)
    except Exception:  # no match: an edited or never-run notebook
        return path.stat().st_size / 1e4


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["execute"]
    paths = args.notebooks or [
        p for p in sorted((ROOT / "nbs").rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts
    ]
    cache = get_cache(str(CACHE))
    paths.sort(key=lambda p: -expected_seconds(cache, p))
    # Threads per kernel: the kernels inherit this, and `workers` of them share the cores.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.workers)))
    t0, failed = time.perf_counter(), []
    with ProcessPoolExecutor(args.workers) as pool:
        jobs = [pool.submit(execute, str(p.resolve()), config["timeout"]) for p in paths]
        for job in as_completed(jobs):
            path, seconds, nb, trace = job.result()
            name = Path(path).relative_to(ROOT)
            if nb is None:
                failed.append(name)
                print(f"FAIL {name} ({seconds:.0f} s)\n{trace}", flush=True)
                continue
            # One writer: the cache is an SQLite file, so only this process stores entries.
            bundle = CacheBundleIn(nb, path, data={"execution_seconds": seconds})
            cache.cache_notebook_bundle(bundle, check_validity=False, overwrite=True)
            print(f"{seconds:6.1f} s  {name}", flush=True)
    wall = time.perf_counter() - t0
    print(f"{len(paths) - len(failed)}/{len(paths)} notebooks ran in {wall:.0f} s wall")
    if failed:
        print("failed:", *failed, sep="\n  ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
