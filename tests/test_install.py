"""The light install (issue 26): `pip install .` is the library and its CLI, nothing of the book's,
the tests', the server's or the ONNX stack; a command that needs an extra says which one."""
import configparser
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"jupyter-book", "selenium", "transformers", "nbdev", "fastapi", "uvicorn", "onnxruntime",
         "onnx", "onnxscript", "gguf", "pytest", "tokenizers", "scikit-learn", "ipykernel", "starlette"}


def settings():
    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini", encoding="utf-8")
    return cfg["DEFAULT"]


def closure(requirements: list[str]) -> set[str]:
    "Every distribution that installing `requirements` pulls in, read from the installed metadata."
    seen, todo = set(), [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or (req.marker and not req.marker.evaluate({"extra": ""})): continue
        seen.add(name)
        todo += [Requirement(r) for r in metadata.requires(name) or []]
    return seen


def test_core_install_pulls_no_heavy_stack():
    pulled = closure(settings()["requirements"].split())
    assert "torch" in pulled and "tiktoken" in pulled
    assert not pulled & HEAVY, sorted(pulled & HEAVY)


def test_extras_cover_what_the_optional_commands_import():
    s = settings()
    assert {"fastapi", "uvicorn"} <= closure(s["serve_requirements"].split())
    assert {"onnx", "onnxscript", "onnxruntime", "gguf"} <= closure(s["export_requirements"].split())
    assert {"nbdev", "jupyter-book"} <= closure(s["book_requirements"].split())


def test_cli_imports_no_optional_package():
    """Nor matplotlib: installed by the core, but about a second to load, which only the commands
    that draw should pay (issue 26: a cold `eval` under 10 s)."""
    code = ("import sys, llm_zero.cli; llm_zero.cli.build_parser(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'uvicorn', "
            "'pydantic', 'onnx', 'onnxscript', 'onnxruntime', 'gguf', 'nbdev', 'IPython', "
            "'matplotlib'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_missing_extra_is_one_line_naming_it():
    code = ("import sys; sys.modules['fastapi'] = None; from llm_zero.cli import main; "
            "sys.exit(main(['serve', '--checkpoint', 'experiments/python-docs-char']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "pip install 'llm_zero[serve]'" in r.stderr, r.stderr


def test_missing_gguf_names_the_export_extra():
    code = ("import sys; sys.modules['gguf'] = None; from llm_zero.cli import main; "
            "sys.exit(main(['export', '--format', 'gguf', '--checkpoint', "
            "'experiments/base-cpu', '--out', 'never-written']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "pip install 'llm_zero[export]'" in r.stderr, r.stderr
    assert not (ROOT / "never-written").exists()
