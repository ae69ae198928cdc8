"""Chapter 2's data pipeline against the book's own package, and the download cache's guarantees."""
import hashlib
import http.server
import os
import re
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
import tiktoken
import torch
from llms_from_scratch import ch02 as book

from llm_zero.data import CORPORA, Corpus, DataUnavailableError, GPTDatasetV1, create_dataloader_v1, fetch, load_text, seed_cache


@pytest.fixture(scope="module")
def verdict():
    return load_text("the-verdict")


@pytest.mark.parametrize("max_length,stride", [(4, 1), (4, 4), (256, 128), (32, 50)])
def test_windows_match_the_book(verdict, max_length, stride):
    gpt2 = tiktoken.get_encoding("gpt2")
    ours, theirs = GPTDatasetV1(verdict, gpt2, max_length, stride), book.GPTDatasetV1(verdict, gpt2, max_length, stride)
    assert len(ours) == len(theirs)
    for i in (0, 1, len(ours) // 2, len(ours) - 1):
        for a, b in zip(ours[i], theirs[i]):
            assert torch.equal(a, b)


def test_shuffled_batches_match_the_book(verdict):
    kw = dict(batch_size=8, max_length=16, stride=8, shuffle=True, drop_last=True)
    torch.manual_seed(123)
    ours = [x for x, _ in create_dataloader_v1(verdict, **kw)]
    torch.manual_seed(123)
    theirs = [x for x, _ in book.create_dataloader_v1(verdict, **kw)]
    assert len(ours) == len(theirs) > 10
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_endoftext_is_allowed_in_the_text():
    ds = GPTDatasetV1("a b <|endoftext|> c d e f", tiktoken.get_encoding("gpt2"), max_length=3, stride=1)
    assert 50256 in ds.token_ids.tolist()


@pytest.mark.parametrize("kwargs,message", [
    (dict(max_length=0, stride=1), "max_length and stride must be at least 1"),
    (dict(max_length=4, stride=-2), "stride must be at least 1"),
    (dict(max_length=10_000, stride=1), "one window needs max_length + 1 = 10001"),
])
def test_bad_window_settings_are_explained(verdict, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        GPTDatasetV1(verdict, tiktoken.get_encoding("gpt2"), **kwargs)


def test_every_registered_file_is_cached_with_its_digest():
    for c in CORPORA.values():
        path = fetch(c.name)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == c.sha256


def test_the_default_corpus_needs_no_download(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_ZERO_CACHE", str(tmp_path))
    text = load_text()
    assert len(text) > 300_000 and "assert" in text
    assert list(tmp_path.iterdir()) == []


@contextmanager
def server(payload: bytes, cut_after: int | None = None):
    "Serve `payload` on loopback; with `cut_after`, announce the full length but hang up early."
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload if cut_after is None else payload[:cut_after])
        def log_message(self, *args):
            pass
    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}/file"
    finally:
        srv.shutdown()


@pytest.fixture
def fake_corpus(tmp_path, monkeypatch):
    "Register a corpus 'fake' whose URL the test chooses, with an empty cache."
    monkeypatch.setenv("LLM_ZERO_CACHE", str(tmp_path / "cache"))
    payload = b"x" * 200_000
    def register(url):
        monkeypatch.setitem(CORPORA, "fake", Corpus("fake", "fake.txt", url, hashlib.sha256(payload).hexdigest(), "test"))
    return payload, register, tmp_path / "cache"


def test_download_verifies_and_caches(fake_corpus):
    payload, register, cache = fake_corpus
    with server(payload) as url:
        register(url)
        assert fetch("fake").read_bytes() == payload
    assert sorted(p.name for p in cache.iterdir()) == ["fake.txt"]


def test_interrupted_download_leaves_no_file(fake_corpus):
    payload, register, cache = fake_corpus
    with server(payload, cut_after=50_000) as url:
        register(url)
        with pytest.raises(DataUnavailableError, match="fake.txt"):
            fetch("fake")
    assert not cache.exists() or list(cache.iterdir()) == []


def test_corrupt_cached_copy_is_set_aside_and_refetched(fake_corpus):
    payload, register, cache = fake_corpus
    cache.mkdir(parents=True)
    (cache / "fake.txt").write_bytes(b"truncated")
    with server(payload) as url:
        register(url)
        assert fetch("fake").read_bytes() == payload
    assert (cache / "fake.txt.corrupt").read_bytes() == b"truncated"


def test_offline_error_says_what_to_put_where(fake_corpus):
    _, register, cache = fake_corpus
    register("http://127.0.0.1:9/unreachable")
    with pytest.raises(DataUnavailableError) as e:
        fetch("fake")
    msg = str(e.value)
    assert CORPORA["fake"].sha256 in msg and str(cache / "fake.txt") in msg


def test_seed_cache_fills_tiktoken_cache_too(tmp_path, monkeypatch):
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not shared.is_dir():
        pytest.skip("../shared/data is not here")
    monkeypatch.setenv("LLM_ZERO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    assert "the-verdict" in seed_cache(shared)
    assert len(list((tmp_path / "tiktoken").iterdir())) == 2
    # A fresh process with only these caches encodes offline.
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", "import tiktoken; print(len(tiktoken.get_encoding('gpt2').encode(open(" +
                          repr(str(tmp_path / 'cache' / 'the-verdict.txt')) + ").read())))"],
                         env={**os.environ}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "5145"


def test_unknown_names_list_the_known_ones():
    with pytest.raises(KeyError, match="the-verdict"):
        load_text("no-such-thing")
    with pytest.raises(KeyError, match="known names"):
        fetch("no-such-thing")
