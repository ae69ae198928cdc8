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


# The modules that take longest, longest first (a CI run's --durations, summed per module).
# scripts/test.sh gives each of its two workers whole modules in collection order
# (--dist loadscope --no-loadscope-reorder): started first, the long ones run side by side
# and the many short ones fill in at the end, so both workers finish together. Left to
# xdist's own order (most tests first) the few-test long modules came last, on one worker.
LONGEST_FIRST = ["test_export.py", "test_finetune_dpo.py", "test_zero_to_chat.py",
                 "test_base_model_chapter.py", "test_speedrun.py", "test_fsdp.py",
                 "test_offline.py", "test_cli.py", "test_wordpiece.py", "test_serve.py",
                 "test_resume.py", "test_finetune_faults.py", "test_hf_export.py",
                 "test_report.py"]


@pytest.hookimpl(trylast=True)  # after pytest's own reordering by fixture
def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest as found


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tests' models are tiny: on 2 cores a second thread only adds synchronisation cost.
    Set for every test: a command run in this process sets its config's threads and keeps them."""
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


def tiny_instruct_run(out, limit: int, *overrides: str):
    """The tests' instruction model: the tiny GPT tuned for one epoch on the first `limit`
    records into `out` (`overrides` win over these settings)."""
    from llm_zero.finetune.cli import InstructConfig, finetune_instruct
    from llm_zero.train.config import load_config
    cfg = load_config(None, ["model.base=tiny-gpt", f"data.limit={limit}", "train.epochs=1", "train.lr=1e-3",
                             "generate.test_limit=1", "generate.max_new_tokens=4", *overrides], InstructConfig)
    finetune_instruct(cfg, out, progress=False)
    return out
