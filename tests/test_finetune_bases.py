"""Issue 10 §1: fine-tuning works from every base the engine can produce (char, bpe, gpt2), with
both commands, including text with characters outside a character vocabulary."""
import json

import pytest
import torch

from llm_zero.cli import main
from llm_zero.serve.chat import chat_reply
from llm_zero.train.checkpoint import load_classifier, load_language_model
from llm_zero.train.tokenizers import load_tokenizer

torch.set_num_threads(1)

# Characters The Verdict (the pretraining text) never uses, so a char tokenizer has no id for them.
FOREIGN = "ùÜ"
RECORDS = [{"instruction": f"Répète {i} fois: où est Ü{i}?", "input": "" if i % 2 else "çà ù",
            "output": f"Ü{i} est là, où tu sais."} for i in range(12)]


def cli(*args):
    code = main([str(a) for a in args])
    assert code == 0
    return code


@pytest.fixture(scope="module", params=["char", "bpe", "gpt2"])
def base(request, tmp_path_factory):
    "A tiny base pretrained by the engine for a few steps with each tokenizer kind."
    d = tmp_path_factory.mktemp(f"base-{request.param}")
    (d / "data.json").write_text(json.dumps(RECORDS, ensure_ascii=False), encoding="utf-8")
    cli("train", "--config", "configs/default.yaml", "--out", d / "run", "--quiet", "data.corpus=the-verdict",
        f"data.tokenizer={request.param}", "data.bpe_vocab_size=300", "model.context_length=64", "model.emb_dim=32",
        "model.n_heads=2", "model.n_layers=1", "train.max_steps=4", "train.batch_size=4", "train.eval_batches=1",
        "schedule.warmup_steps=1", "run.sample_tokens=0", "train.threads=1")
    return request.param, d


def test_the_char_vocabulary_lacks_the_foreign_characters(base):
    kind, d = base
    tok = load_tokenizer(d / "run")
    if kind == "char":
        assert all(ch not in tok.chars for ch in FOREIGN)
        assert tok.encode(FOREIGN) == [tok.unk_id, tok.unk_id]
    else:
        assert tok.unk_id is None and tok.decode(tok.encode(FOREIGN)) == FOREIGN


def test_classify_from_each_base(base):
    kind, d = base
    cli("finetune", "classify", "--out", d / "cls", "--quiet", f"model.base={d / 'run'}", "data.limit=20",
        "data.max_length=48", "train.epochs=1", "train.lr=1e-3", "train.eval_freq=2", "train.eval_iter=1",
        "train.device=cpu")
    model, tok, meta = load_classifier(d / "cls")
    assert tok.kind == kind and meta["pad_token_id"] == tok.pad_id
    assert meta["pad_token_id"] < meta["model"]["vocab_size"]
    # A message with characters the base never saw is classified, not refused.
    ids = torch.tensor([tok.encode(f"WIN {FOREIGN} now")])
    assert model(ids)[:, -1, :].shape == (1, 2)
    m = json.loads((d / "cls" / "metrics.json").read_text())
    assert 0 <= m["accuracy"]["test"] <= 1 and m["step"] == 1   # 14 training messages: one batch of 8
    assert [json.loads(l)["step"] for l in open(d / "cls" / "metrics.jsonl")][0] == 1


def test_instruct_from_each_base_with_foreign_characters(base):
    kind, d = base
    cli("finetune", "instruct", "--out", d / "ins", "--quiet", f"model.base={d / 'run'}", f"data.path={d / 'data.json'}",
        "data.batch_size=4", "train.epochs=2", "train.lr=1e-3", "train.eval_freq=1", "train.eval_iter=1",
        "generate.max_new_tokens=3", "generate.test_limit=1")
    model, tok, meta = load_language_model(d / "ins")
    assert tok.kind == kind and meta["task"] == "instruct" and meta["step"] == 4   # 10 training records, 2 epochs
    scores = json.loads((d / "ins" / "scores.json").read_text())
    assert scores["n"] == 1 and len(scores["val_losses"]) == 4
    # The end of a response is the tokenizer's own end-of-text id: in range for every kind.
    assert tok.eos_id is not None and tok.eos_id < model.cfg["vocab_size"]
    assert isinstance(chat_reply(model, tok, f"Où est {FOREIGN}?", max_new_tokens=3), str)



@pytest.fixture(scope="module", params=["char", "bpe"])
def long_base(request, tmp_path_factory):
    """A tiny base of each kind whose vocabulary lacks GPT-2's 50,256 ids, with a context that
    holds a whole Alpaca-format pair (64 tokens do not)."""
    d = tmp_path_factory.mktemp(f"long-base-{request.param}")
    (d / "data.json").write_text(json.dumps(RECORDS, ensure_ascii=False), encoding="utf-8")
    cli("train", "--config", "configs/default.yaml", "--out", d / "run", "--quiet", "data.corpus=the-verdict",
        f"data.tokenizer={request.param}", "data.bpe_vocab_size=300", "model.context_length=320",
        "model.emb_dim=32", "model.n_heads=2", "model.n_layers=1", "train.max_steps=2", "train.batch_size=2",
        "train.eval_batches=1", "schedule.warmup_steps=1", "run.sample_tokens=0", "train.threads=1")
    return request.param, d


def test_dpo_from_each_base(long_base):
    """DPO's pairs are the SFT model's answers, which stop at the tokenizer's own end-of-text id: a
    4,096-token BPE base once failed here, asked for GPT-2's id 50256 (issue 20)."""
    kind, d = long_base
    common = [f"data.path={d / 'data.json'}", "data.batch_size=4", "train.epochs=1",
              "train.eval_freq=1", "train.eval_iter=1", "generate.max_new_tokens=3",
              "generate.test_limit=1"]
    cli("finetune", "instruct", "--out", d / "sft", "--quiet", f"model.base={d / 'run'}", *common)
    cli("finetune", "dpo", "--out", d / "dpo", "--quiet", f"model.sft={d / 'sft'}",
        "data.max_new_tokens=3", *common)
    pairs = json.loads((d / "dpo" / "pairs.json").read_text())
    scores = json.loads((d / "dpo" / "scores.json").read_text())
    assert len(pairs["train"]) and len(pairs["validation"]) and scores["sft"]["n"] == 1
    assert sum(scores["preference_dpo_vs_sft"][k] for k in ("wins", "ties", "losses")) == 1
