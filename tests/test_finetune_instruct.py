"""Chapter 7 (llm_zero.finetune.instruct): parity with the book's llms_from_scratch.ch07, scoring, judge, bad input."""
import functools
import json

import pytest
import tiktoken
import torch
from hypothesis import given, settings, strategies as st
from llms_from_scratch import ch05 as book5, ch07 as book7

from llm_zero.data.dataset import (RESPONSE_HEADING, format_input, load_instruction_data, split_instruction_data,
                                   validate_instruction_records)
from llm_zero.eval.report import exact_match, lcs_length, rouge_l, score_responses
from llm_zero.finetune.instruct import (InstructionDataset, OllamaUnavailable, check_language_model, custom_collate_fn,
                                        extract_response, generate_responses, query_model, save_responses)
from llm_zero.model.gpt import to_classifier
from llm_zero.model.gpt import GPTModel

TINY = {"vocab_size": 50257, "context_length": 64, "emb_dim": 16, "n_heads": 2, "n_layers": 1, "drop_rate": 0.0, "qkv_bias": True}




@pytest.fixture(scope="module")
def data(): return load_instruction_data()


@pytest.fixture(scope="module")
def tok(): return tiktoken.get_encoding("gpt2")


def test_data_split_and_format_match_the_book(data, tok):
    assert len(data) == 1100
    train, val, test = split_instruction_data(data)
    assert (len(train), len(val), len(test)) == (935, 55, 110)
    assert train == data[:935] and test == data[935:1045] and val == data[1045:]
    assert all(format_input(e) == book7.format_input(e) for e in data)
    assert sum(e["input"] == "" for e in data) > 0  # both prompt shapes occur
    ours, theirs = InstructionDataset(data[:60], tok), book7.InstructionDataset(data[:60], tok)
    assert [ours[i] for i in range(60)] == [theirs[i] for i in range(60)]


def test_malformed_records_name_the_index(tmp_path, data):
    with pytest.raises(ValueError, match=r"Record 2 is missing key\(s\) \['input'\]"):
        validate_instruction_records([data[0], data[1], {"instruction": "x", "output": "y"}])
    with pytest.raises(ValueError, match=r"Record 0: \['output'\] must be strings"):
        validate_instruction_records([{"instruction": "x", "input": "", "output": 3}])
    with pytest.raises(ValueError, match="Record 1 must be a dict"):
        validate_instruction_records([data[0], ["x"]])
    with pytest.raises(ValueError, match="must be a list of records"):
        validate_instruction_records({"instruction": "x"})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([data[0], {"instruction": "only"}]))
    with pytest.raises(ValueError, match="Record 1 is missing"): load_instruction_data(bad)
    bad.write_text("[{")
    with pytest.raises(ValueError, match="is not valid JSON"): load_instruction_data(bad)
    with pytest.raises(ValueError, match="Record 0 is missing"): InstructionDataset([{"input": "", "output": ""}], None)


seqs = st.lists(st.lists(st.integers(0, 50255), min_size=1, max_size=10), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None)
@given(seqs, st.one_of(st.none(), st.integers(1, 12)), st.sampled_from([(50256, -100), (0, -1)]))
def test_collate_matches_the_book(batch, max_len, ids):
    pad, ignore = ids
    batch = [[t if t != pad else pad + 1 for t in s] for s in batch]  # the book masks by value; keep pad out of the text
    a = custom_collate_fn(batch, pad_token_id=pad, ignore_index=ignore, allowed_max_length=max_len)
    b = book7.custom_collate_fn(batch, pad_token_id=pad, ignore_index=ignore, allowed_max_length=max_len)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 999), min_size=2, max_size=10), st.integers(0, 12)), min_size=1, max_size=4))
def test_instruction_masking_hides_exactly_the_prompt(items):
    items = [(ids, min(p, len(ids))) for ids, p in items]
    x, y = custom_collate_fn(items)
    plain_x, plain_y = custom_collate_fn([ids for ids, _ in items])
    assert torch.equal(x, plain_x)
    for row, (_, p) in enumerate(items):
        keep = (plain_y[row] != -100) & (torch.arange(y.shape[1]) >= max(p - 1, 0))
        assert torch.equal(y[row] != -100, keep)
        assert torch.equal(y[row][keep], plain_y[row][keep])


def test_masked_dataset_keeps_response_and_end_of_text(data, tok):
    ds = InstructionDataset(data[:3], tok, mask_instruction=True)
    x, y = custom_collate_fn([ds[i] for i in range(3)])
    for i in range(3):
        kept = y[i][y[i] != -100].tolist()
        assert kept[-1] == 50256 and tok.decode(kept[:-1]) == data[i]["output"]


def _lcs_reference(a, b):
    @functools.cache
    def f(i, j):
        if i == len(a) or j == len(b): return 0
        return 1 + f(i + 1, j + 1) if a[i] == b[j] else max(f(i + 1, j), f(i, j + 1))
    return f(0, 0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from("abcd"), max_size=12), st.lists(st.sampled_from("abcd"), max_size=12))
def test_lcs_against_recursive_definition(a, b):
    assert lcs_length(a, b) == _lcs_reference(tuple(a), tuple(b)) == lcs_length(b, a)


def test_rouge_l_and_exact_match_values():
    assert rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)
    # precision 2/2, recall 2/4: F = 2 * 1 * 0.5 / 1.5
    assert rouge_l("quick fox", "the quick brown fox") == pytest.approx(2 / 3)
    assert rouge_l("Hello, WORLD!", "hello world") == 1.0
    assert rouge_l("", "") == 0.0 and rouge_l("x", "") == 0.0
    assert exact_match(" The  answer: 42. ", "the answer 42") == 1.0 and exact_match("42", "43") == 0.0
    s = score_responses([{"output": "a b", "r": "a b"}, {"output": "a b c d", "r": "a"}], key="r")
    assert s == {"n": 2, "exact_match": 0.5, "rouge_l": pytest.approx((1 + 0.4) / 2)}
    with pytest.raises(ValueError, match="Record 0 has no 'model_response'"): score_responses([{"output": "x"}])


def test_extract_response():
    p = "PROMPT" + RESPONSE_HEADING
    assert extract_response(p + "Paris.<|endoftext|>more", p) == "Paris."
    assert extract_response("PROMPT\n\n### Response:\n  Yes  ", "PROMPT") == "Yes"


def test_generation_matches_the_books_recipe_and_saves(data, tok, tmp_path):
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    entries = [dict(e) for e in data[935:937]]
    ours = generate_responses(model, entries, tok, max_new_tokens=6)
    for e, o in zip(entries, ours):
        text = format_input(e)
        ids = book5.generate(model, book5.text_to_token_ids(text + RESPONSE_HEADING, tok)[:, -64:], 6, 64, eos_id=50256)
        expected = book5.token_ids_to_text(ids, tok)[len(text):].replace("### Response:", "").strip()
        assert o["model_response"] == expected and {k: o[k] for k in e} == e
    p = save_responses(ours, tmp_path / "out" / "responses.json")
    assert json.loads(p.read_text()) == ours


def test_classifier_cannot_generate(tok, data):
    torch.manual_seed(0)
    clf = to_classifier(GPTModel(TINY))
    with pytest.raises(ValueError, match="out_head has 2 outputs.*it is a classifier"): check_language_model(clf)
    with pytest.raises(ValueError, match="it is a classifier"): generate_responses(clf, data[:1], tok)


def test_judge_needs_a_local_server():
    import socket
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    with pytest.raises(OllamaUnavailable, match=r"No Ollama server is running at .*ollama serve"):
        query_model("hi", url=f"http://127.0.0.1:{port}/api/chat")
    with pytest.raises(ValueError, match="not on localhost"):
        query_model("hi", url="http://ollama.example.org:11434/api/chat")
