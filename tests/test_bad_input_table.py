"""Issue 25: the bad-input table. Every row is one bad input to one `llm-zero` command, the exit
status it must give and a fragment of its one-line message. Each row asserts one line on stderr,
no traceback, and that the run folders it could touch are byte-identical afterwards. New bad
inputs found later get a row here."""
import hashlib
import json
from pathlib import Path

import pytest

from conftest import run_cli

TINY = ["data.corpus=the-verdict", "data.tokenizer=char", "model.context_length=32",
        "model.emb_dim=32", "model.n_heads=2", "model.n_layers=1", "train.batch_size=4",
        "train.eval_batches=1", "schedule.warmup_steps=1", "run.sample_tokens=0",
        "train.threads=1", "train.max_steps=4", "run.checkpoint_interval=2"]
RECORDS = [{"instruction": f"Say {w}.", "input": "", "output": w}
           for w in ("hi", "yes", "no", "ok", "red", "blue", "one", "two", "cat", "dog")]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "A tiny pretrained run, an instruction run and a classifier from it, and some bad files."
    d = tmp_path_factory.mktemp("table")
    code, _, err = run_cli("train", "--config", "configs/default.yaml", "--out", d / "run",
                           "--quiet", *TINY)
    assert code == 0, err
    (d / "records.json").write_text(json.dumps(RECORDS * 3))
    code, _, err = run_cli("finetune", "instruct", "--out", d / "ins", "--quiet",
                           f"model.base={d / 'run'}", f"data.path={d / 'records.json'}",
                           "train.epochs=1", "train.eval_iter=1", "generate.max_new_tokens=4",
                           "train.threads=1")
    assert code == 0, err
    code, _, err = run_cli("finetune", "classify", "--out", d / "cls", "--quiet",
                           f"model.base={d / 'run'}", "data.limit=20", "data.max_length=32",
                           "train.epochs=1", "train.eval_iter=1", "train.threads=1")
    assert code == 0, err
    (d / "bad.yaml").write_text("train: {lr: [1, 2\n")
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "notes.txt").write_text("not a corpus of records")
    (d / "empty.txt").write_text("")
    (d / "broken.json").write_text('[{"instruction": "x"')
    return d



ROWS = [
    # train
    ("train", "--config {d}/missing.yaml --out {d}/t1", 2, "missing.yaml"),
    ("train", "--config {d}/bad.yaml --out {d}/t2", 2, "bad.yaml"),
    ("train", "--config {d}/list.yaml --out {d}/t3", 2, "list.yaml"),
    ("train", "--config configs/default.yaml --out {d}/t4 train.lr=[", 2, "train.lr"),
    ("train", "--config configs/default.yaml --out {d}/t5 train.nope=1", 2, "train.nope"),
    ("train", "--config configs/default.yaml --out {d}/t6 nosection=1", 2, "nosection"),
    ("train", "--config configs/default.yaml --out {d}/t7 train.lr", 2, "train.lr"),
    ("train", "--config configs/default.yaml --out {d}/t8 train.lr=-1", 2, "train.lr"),
    ("train", "--config configs/default.yaml --out {d}/t9 train.lr=nan", 2, "train.lr"),
    ("train", "--config configs/default.yaml --out {d}/t10 train.max_steps=0", 2, "max_steps"),
    ("train", "--config configs/default.yaml --out {d}/t11 model.n_heads=3", 2, "n_heads"),
    ("train", "--config configs/default.yaml --out {d}/t12 data.corpus=no-such-corpus", 2,
     "no-such-corpus"),
    ("train", "--config configs/default.yaml --out {run}", 2, "--resume"),
    ("train", "--config configs/default.yaml --out {d}/t13 --resume", 2, "t13"),
    ("train", "--config configs/default.yaml --out {d}/t14 model.arch=gpt5", 2, "gpt5"),
    ("train", "--config configs/default.yaml --out {d}/t15 optimizer.name=sgd", 2, "sgd"),
    # generate
    ("generate", "--checkpoint {d}/nowhere --prompt hi", 2, "nowhere"),
    ("generate", "--checkpoint {run} --prompt ''", 2, "prompt"),
    ("generate", "--checkpoint {run} --prompt hi --max-tokens -1", 2, "--max-tokens"),
    ("generate", "--checkpoint {run} --prompt hi --temperature -1", 2, "--temperature"),
    ("generate", "--checkpoint {run} --prompt hi --temperature inf", 2, "--temperature"),
    ("generate", "--checkpoint {run} --prompt hi --top-k 0", 2, "--top-k"),
    ("generate", "--checkpoint {run} --prompt hi --top-p 0", 2, "--top-p"),
    ("generate", "--checkpoint {run} --prompt hi --top-p 1.5", 2, "--top-p"),
    ("generate", "--checkpoint {run} --prompt hi --seed x", 2, "--seed"),
    ("generate", "--checkpoint {d}/notes.txt --prompt hi", 2, "notes.txt"),
    # eval
    ("eval", "--checkpoint {d}/nowhere", 2, "nowhere"),
    ("eval", "--checkpoint {run} --corpus no-such-corpus", 2, "no-such-corpus"),
    ("eval", "--checkpoint {run} --corpus {d}/empty.txt", 2, "empty.txt"),
    ("eval", "--checkpoint {run} --max-tokens 0", 2, "--max-tokens"),
    ("eval", "--checkpoint {run} --batch-size 0", 2, "--batch-size"),
    # prepare
    ("prepare", "--corpus no-such-corpus --out {d}/p1", 2, "no-such-corpus"),
    ("prepare", "--corpus the-verdict --out {d}/p2 --val-fraction 1.5", 2, "--val-fraction"),
    ("prepare", "--corpus the-verdict --out {d}/p3 --tokenizer bpe --vocab-size 10", 2,
     "vocab"),
    ("prepare", "--corpus the-verdict --out {d}/p4 --tokenizer-from {d}/nowhere", 2, "nowhere"),
    ("prepare", "--corpus {d}/empty.txt --out {d}/p5", 2, "empty.txt"),
    # tokenizer
    ("tokenizer", "train --corpus the-verdict --out {d}/k1 --vocab-size 3", 2, "vocab"),
    ("tokenizer", "train --corpus no-such-corpus --out {d}/k2", 2, "no-such-corpus"),
    ("tokenizer", "train --corpus the-verdict --out {d}/k3 --kind wordpiece", 2, "--kind"),
    # export
    ("export", "--checkpoint {d}/nowhere --format safetensors --out {d}/e1", 2, "nowhere"),
    ("export", "--checkpoint {run} --format gguf2 --out {d}/e2", 2, "--format"),
    ("export", "--checkpoint {run} --format safetensors --out {run}", 2, "--out"),
    ("export", "--checkpoint {run} --format safetensors --out {ins}", 2, "--out"),
    ("export", "--checkpoint {run} --format safetensors --dtype int3 --out {d}/e3", 2,
     "--dtype"),
    # serve
    ("serve", "--checkpoint {d}/nowhere", 2, "nowhere"),
    ("serve", "--checkpoint {run} --port 70000", 2, "--port"),
    ("serve", "--checkpoint {cls}", 2, "classif"),
    # chat
    ("chat", "--checkpoint {ins} --prompt ''", 2, "prompt"),
    ("chat", "--checkpoint {ins} --prompt hi --max-tokens 0", 2, "--max-tokens"),
    ("chat", "--checkpoint {ins} --prompt hi --max-tokens -1", 2, "--max-tokens"),
    ("chat", "--checkpoint {run} --prompt hi", 2, "finetune instruct"),
    ("chat", "--checkpoint {cls} --prompt hi", 2, "classif"),
    ("chat", "--checkpoint {d}/nowhere --prompt hi", 2, "nowhere"),
    # finetune
    ("finetune", "classify --out {d}/f1 model.base={d}/nowhere", 2, "nowhere"),
    ("finetune", "classify --out {d}/f2 model.base={run} train.epochs=0", 2, "epochs"),
    ("finetune", "classify --out {d}/f3 model.base={run} train.lr=[", 2, "train.lr"),
    ("finetune", "classify --out {d}/f4 model.base={run} lora.rank=-1", 2, "rank"),
    ("finetune", "classify --out {cls} model.base={run}", 2, "--resume"),
    ("finetune", "classify --config {d}/bad.yaml --out {d}/f5", 2, "bad.yaml"),
    ("finetune", "instruct --out {d}/f6 model.base={run} data.path={d}/broken.json", 2,
     "broken.json"),
    ("finetune", "instruct --out {d}/f7 model.base={run} data.path={d}/notes.txt", 2,
     "notes.txt"),
    ("finetune", "instruct --out {d}/f8 model.base={cls}", 2, "classif"),
    ("finetune", "instruct --out {ins} model.base={run}", 2, "--resume"),
    ("finetune", "instruct --out {d}/f9 --resume model.base={run}", 2, "f9"),
    ("finetune", "dpo --out {d}/f10", 2, "model.sft"),
    ("finetune", "dpo --out {d}/f11 model.sft={d}/nowhere", 2, "nowhere"),
    ("finetune", "dpo --out {d}/f12 model.sft={ins} train.beta=-1", 2, "beta"),
    ("finetune", "dpo --out {d}/f13 model.sft={cls}", 2, "classif"),
    # zero-to-chat (the main job)
    ("zero-to-chat", "--config {d}/bad.yaml --out {d}/z1", 2, "bad.yaml"),
    ("zero-to-chat", "--config {d}/list.yaml --out {d}/z2", 2, "list.yaml"),
    ("zero-to-chat", "--out {d}/z3 pretrain.train.max_stepz=1", 2, "max_stepz"),
    ("zero-to-chat", "--quick --out {run}", 2, "job.yaml"),
    # report
    ("report", "{d}/nowhere", 2, "nowhere"),
    ("report", "{run} --max-tokens 0", 2, "--max-tokens"),
    ("report", "{d}/notes.txt", 2, "notes.txt"),
]


@pytest.mark.parametrize("command, args, status, fragment", ROWS,
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(ROWS)])
def test_bad_input(runs, command, args, status, fragment):
    names = {"run": runs / "run", "ins": runs / "ins", "cls": runs / "cls", "d": runs}
    argv = [command, *[a.format(**names) for a in _split(args)]]
    before = {k: snapshot(runs / k) for k in ("run", "ins", "cls")}
    code, _, err = run_cli(*argv)
    lines = err.strip().splitlines()
    assert code == status, (argv, code, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert fragment in lines[-1], (fragment, err)
    for k, files in before.items(): assert snapshot(runs / k) == files, k


def _split(args: str) -> list[str]:
    "Shell-like split that keeps '' as an empty argument."
    import shlex
    return shlex.split(args)


def test_the_table_covers_every_command():
    from llm_zero.cli import build_parser
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    assert commands <= {r[0] for r in ROWS}, commands - {r[0] for r in ROWS}
    assert len(ROWS) >= 60
