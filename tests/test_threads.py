"""One thread policy (issue 26): every command that runs a model takes `--threads` and has set
PyTorch's thread count by the time it builds or loads its model; without it, the policy's default
(or the config's train.threads) applies. Timing is benchmarks/bench_threads.py's job, not a test's."""
import pytest
import torch

import llm_zero.cli as cli
import llm_zero.finetune.cli as ft
import llm_zero.eval.report as report
import llm_zero.serve.app as serve_app
import llm_zero.serve.chat as chat
import llm_zero.train.engine as engine
from conftest import run_cli
from llm_zero.train.config import load_config
from llm_zero.train.engine import DEFAULT_THREADS

CKPT = "experiments/base-cpu"


class Reached(KeyboardInterrupt):
    "Raised by a stub where the command would start its model: the CLI turns it into exit 130."


@pytest.fixture
def seen(monkeypatch):
    "Stub `module.name` to record the thread count (and its arguments) when the command reaches it."
    calls = []
    def stub(module, name):
        def record(*args, **kwargs):
            calls.append((torch.get_num_threads(), args))
            raise Reached
        monkeypatch.setattr(module, name, record)
    before = torch.get_num_threads()
    yield stub, calls
    torch.set_num_threads(before)


COMMANDS = {
    "generate": ((cli, "load_model_from_checkpoint"),
                 ["generate", "--checkpoint", CKPT, "--prompt", "The "]),
    "eval": ((cli, "load_model_from_checkpoint"), ["eval", "--checkpoint", CKPT]),
    "serve": ((serve_app, "serve"), ["serve", "--checkpoint", CKPT]),
    "chat": ((chat, "load_language_model"), ["chat", "--checkpoint", CKPT, "--prompt", "Hi"]),
    "report": ((report, "write_report"), ["report", CKPT]),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_model_commands_apply_threads_before_the_model_runs(command, seen):
    stub, calls = seen
    stub(*COMMANDS[command][0])
    torch.set_num_threads(2)
    assert run_cli(*COMMANDS[command][1], "--threads", 3)[0] == 130
    torch.set_num_threads(2)
    assert run_cli(*COMMANDS[command][1])[0] == 130
    assert [threads for threads, _ in calls] == [3, DEFAULT_THREADS]


def test_train_applies_threads_from_the_option_or_the_config(seen, tmp_path):
    stub, calls = seen
    stub(engine, "build_model")
    for i, extra in enumerate([["--threads", 3], ["train.threads=2"], ["train.threads=null"]]):
        torch.set_num_threads(4)
        code, _, err = run_cli("train", "--config", "configs/default.yaml", "--quiet",
                               "--out", tmp_path / str(i), *extra)
        assert code == 130, err
    assert [threads for threads, _ in calls] == [3, 2, DEFAULT_THREADS]


@pytest.mark.parametrize("kind, func", [("classify", "finetune_classify"),
                                        ("instruct", "finetune_instruct")])
def test_finetune_commands_pass_threads_to_the_config(kind, func, seen):
    stub, calls = seen
    stub(ft, func)
    assert run_cli("finetune", kind, "--threads", 3)[0] == 130
    assert calls[0][1][0].train.threads == 3


def test_finetune_dpo_passes_threads_to_the_config(seen):
    import llm_zero.finetune.dpo as dpo
    stub, calls = seen
    stub(dpo, "finetune_dpo")
    assert run_cli("finetune", "dpo", "--threads", 3)[0] == 130
    assert calls[0][1][0].train.threads == 3


def test_finetune_runs_start_on_the_configured_threads(tmp_path, seen):
    torch.set_num_threads(4)
    cfg = load_config(None, ["train.threads=3"], ft.ClassifyConfig)
    ft._start(cfg, tmp_path / "run", False, ("model",))
    assert torch.get_num_threads() == 3
    ft._start(load_config(None, [], ft.ClassifyConfig), tmp_path / "run2", False, ("model",))
    assert torch.get_num_threads() == DEFAULT_THREADS


@pytest.mark.parametrize("args", [["generate", "--checkpoint", CKPT, "--prompt", "x"],
                                  ["train", "--config", "configs/default.yaml"]])
def test_zero_threads_is_one_line(args):
    code, out, err = run_cli(*args, "--threads", 0)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "threads" in err, err
