"""The main job (issue 21, chapter 7e): `llm-zero zero-to-chat --quick` end to end, its report
card, the commands it prints, and continuing a job stopped between stages."""
import json
import shlex

import pytest
import yaml

from conftest import ROOT, run_cli

import llm_zero.finetune.zero_to_chat as z
from llm_zero.eval.samples import corpus_words

CONFIG = ROOT / "configs" / "main.yaml"


# One thread, as every test: the job's two would only fight the other pytest worker.
ONE_THREAD = ["pretrain.train.threads=1", "instruct.train.threads=1"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One `--quick` job (about a minute on one core), stopped once as by Ctrl-C when
    instruction tuning starts and then continued by the same command: its folder, what the
    second command printed, and what the stop left."""
    root = tmp_path_factory.mktemp("jobs")
    job = z.job_settings(CONFIG, quick=True, overrides=ONE_THREAD)
    run = z.job_folder(None, job, root)
    args = ("zero-to-chat", "--config", CONFIG, "--quick", "--out", run, "--quiet", *ONE_THREAD)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(z, "instruct_stage", lambda job, run, progress: {
            "interrupted": True, "signal": 2})
        code, out, err = run_cli(*args)
    stopped = {"code": code, "out": out, "stages": json.loads((run / z.STAGES_FILE).read_text()),
               "report": (run / z.REPORT_FILE).exists(), "found": z.job_folder(None, job, root)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(z, "pretrain_stage", lambda *a: pytest.fail("pretrained again"))
        code, out, err = run_cli(*args)
    assert code == 0, err
    return run, out, stopped


def test_quick_job_writes_the_report_card(quick_run):
    run, out, _ = quick_run
    for name in ("job.yaml", "stages.json", "report.md", "report.png", "report.json"):
        assert (run / name).is_file(), name
    card = json.loads((run / "report.json").read_text())
    md = (run / "report.md").read_text()
    assert set(card["stages"]) == {"tokenizer", "pretrain", "instruct", "report"}
    for name in ("pretrain", "instruct"):
        s = card["stages"][name]
        assert s["seconds"] > 0 and s["tokens"] > 0 and s["val_loss"] > 0, s
    v = card["validation"]
    assert v["model"]["bits_per_byte"] > 0 and v["ngram"]["bits_per_byte"] > 0
    assert v["bytes"] > 1000
    # the baseline is the strongest of the configured orders on a slice of training text
    tried = v["ngram"]["slice_losses"]
    assert sorted(tried) == ["2", "3", "4", "5"]
    assert str(v["ngram"]["order"]) == min(tried, key=tried.get)
    assert f"{v['ngram']['order']}-gram Kneser-Ney, the best of orders 2-5" in md
    assert card["temperature"] == 0.8 and len(card["samples"]) == 3
    assert all(0 <= s["words"] <= 1 for s in card["samples"])
    assert card["held_out_words"] > 0.9  # the held-out text is English
    ins = card["instruct"]
    assert ins["n"] == 6 and 0 <= ins["rouge_l"] <= 1 and 0 <= ins["stopped"] <= 1
    assert len(ins["answers"]) == 2 and "stopped" in ins["answers"][0]
    for part in ("| pretrain |", "Kneser-Ney", "ROUGE-L", "## Held-out instructions"):
        assert part in md, part
    assert "Zero to chat finished in" in out and f"{run}/report.md" in out


def test_printed_chat_command_works_on_the_run(quick_run):
    run, out, _ = quick_run
    line = next(x for x in out.splitlines() if "llm-zero chat" in x and "--prompt" in x)
    args = shlex.split(line.split("#")[0])
    assert args[:2] == ["llm-zero", "chat"] and args[3] == f"{run}/instruct"
    code, said, err = run_cli(*args[1:], "--max-tokens", "5")
    assert code == 0, err
    serve = next(x for x in out.splitlines() if "llm-zero serve" in x)
    assert f"--checkpoint {run}/instruct" in serve


def test_the_run_records_its_settings(quick_run):
    run, _, _ = quick_run
    assert yaml.safe_load((run / "job.yaml").read_text()) == z.job_settings(CONFIG, True, ONE_THREAD)


def test_an_interrupted_job_continues_where_it_stopped(quick_run):
    "The fixture's job stopped when instruction tuning began; the same command continued it."
    run, _, stopped = quick_run
    assert stopped["code"] == 130 and "Stopped during instruct" in stopped["out"]
    assert set(stopped["stages"]) == {"tokenizer", "pretrain"} and not stopped["report"]
    assert stopped["found"] == run  # a run without --out picks it up
    card = json.loads((run / "report.json").read_text())
    assert card["stages"]["pretrain"] == stopped["stages"]["pretrain"]  # not pretrained again


def test_bad_job_config_is_one_line(tmp_path):
    bad = tmp_path / "job.yaml"
    bad.write_text("tokenizr: {corpus: austen}\n")
    code, _, err = run_cli("zero-to-chat", "--config", bad, "--out", tmp_path / "run")
    assert code == 2 and "unknown section 'tokenizr'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()
    code, _, err = run_cli("zero-to-chat", "--config", CONFIG, "--out", tmp_path / "run",
                           "pretrain.train.max_stepz=3")
    assert code == 2 and "max_stepz" in err and not (tmp_path / "run").exists()


def test_a_folder_of_another_job_is_refused(tmp_path):
    job = z.job_settings(CONFIG, quick=True)
    z.open_job(tmp_path, job)
    code, _, err = run_cli("zero-to-chat", "--config", CONFIG, "--out", tmp_path)
    assert code == 2 and "holds a job with other settings" in err


def test_committed_base_is_scored_on_the_same_text():
    "The card's comparison: the committed base on the job's held-out text (another tokenizer)."
    job = z.job_settings(CONFIG, quick=True, overrides=["report.sample_tokens=5"])
    job["report"] |= {"compare": str(ROOT / "experiments" / "base-cpu"),
                      "compare_finetunes": str(ROOT / "experiments/finetune-base/results-base-cpu.json")}
    text = "It was a truth universally acknowledged that she had not been to the ball. " * 40
    base = z.committed_base(job, text, corpus_words(text))
    assert 0 < base["bits_per_byte"] < 8 and len(base["samples"]) == 3
    assert base["fine_tunes"]["instruct-masked"]["rouge_l"] == pytest.approx(0.288, abs=1e-3)
    assert base["tokens"] > 1_000_000 and base["seconds"] > 60


def test_a_folder_that_is_not_a_job_is_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run_cli("zero-to-chat", "--config", CONFIG, "--quick", "--out", tmp_path)
    assert code == 2 and "has no job.yaml" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
