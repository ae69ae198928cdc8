"""Command-line overrides (`SECTION.KEY=VALUE`): any text parses or is one line naming it."""
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from llm_zero.cli import main
from llm_zero.train.config import ConfigError, load_config

SECTIONS = st.sampled_from(["model", "data", "optimizer", "schedule", "train", "run"]) | st.text()
KEYS = st.sampled_from(["lr", "max_steps", "emb_dim", "name", "rope_freq", "sampling"]) | st.text()


@settings(max_examples=300, deadline=None)
@given(section=SECTIONS, key=KEYS, value=st.text())
@example(section="train", key="lr", value="[")
@example(section="optimizer", key="lr", value="{a: [1, 2}")
@example(section="run", key="name", value="'unclosed")
@example(section="model", key="emb_dim", value="*alias")
@example(section="run", key="name", value="!!python/object:os.system ls")
def test_any_override_parses_or_is_one_line_config_error(section, key, value):
    try: load_config(None, [f"{section}.{key}={value}"])
    except ConfigError as e:
        assert "\n" not in str(e) and str(e).strip()


@pytest.mark.parametrize("value", ["[", "{a: 1", "'open", "a: b: c", "@x", "`x"])
def test_malformed_yaml_names_the_key_and_the_value(value):
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"optimizer.lr={value}"])
    msg = str(e.value)
    assert "\n" not in msg and "optimizer.lr" in msg and repr(value) in msg and "YAML" in msg


ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [["train", "--config", str(ROOT / "configs" / "default.yaml")]] + [
    ["finetune", task, "--config", str(ROOT / "configs" / f"finetune_{task}.yaml")]
    for task in ("classify", "instruct", "dpo")]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_overrides_on_both_sides_of_an_option_are_all_read(command, tmp_path, capsys):
    # The last override is malformed: the message about it shows that it was read as an
    # override (before the fix argparse refused it with the top-level usage).
    argv = [*command, "run.seed=1", "--quiet", "--out", str(tmp_path / "r"), "optimizer.lr=["]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Override optimizer.lr: '[' is not valid YAML" in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, stray", [
    (COMMANDS[0] + ["run.seed=1", "--quiet", "--bogus"], "--bogus"),
    (["generate", "--checkpoint", "x", "--prompt", "hi", "run.seed=1"], "run.seed=1")])
def test_a_stray_argument_is_named(argv, stray, capsys):
    assert main(argv) == 2
    assert f"unrecognized arguments: {stray}" in capsys.readouterr().err
