"""Shared test set-up: a data cache seeded from ../shared/data, so no test needs the network."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def pytest_configure(config):
    os.environ.setdefault("LLM_ZERO_CACHE", str(ROOT / ".cache" / "llm_zero"))
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT / ".cache" / "tiktoken"))
    if SHARED_DATA.is_dir():
        from llm_zero.data.corpora import seed_cache
        seed_cache(SHARED_DATA)
