"""Shared test set-up: a data cache seeded from ../shared/data, so no test needs the network."""
import contextlib
import io
import os

import pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: a check too slow for CI (e.g. needs llama.cpp built); skipped "
        "unless its requirement is set up")
    os.environ.setdefault("LLM_ZERO_CACHE", str(ROOT / ".cache" / "llm_zero"))
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT / ".cache" / "tiktoken"))
    if SHARED_DATA.is_dir():
        from llm_zero.data.corpora import seed_cache
        seed_cache(SHARED_DATA)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    "The tests' models are tiny: on 2 cores a second thread only adds synchronisation cost."
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run_cli(*args):
    "`llm-zero ARGS` in this process: (exit status, stdout, stderr)."
    from llm_zero.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()
