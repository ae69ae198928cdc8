"""Chapter 6 (llm_zero.finetune.classify): parity with the book's llms_from_scratch.ch06, properties, bad input."""
import copy

import pandas as pd
import pytest
import tiktoken
import torch
from hypothesis import given, settings, strategies as st
from llms_from_scratch import ch06 as book6
from torch.utils.data import DataLoader

from llm_zero.data.dataset import LABELS, SpamDataset, create_balanced_dataset, load_sms_spam, random_split
from llm_zero.finetune.classify import (BagOfWordsBaseline, calc_accuracy_loader, calc_loss_batch, calc_loss_loader,
                                        classify_review, plot_values, train_classifier_simple)
from llm_zero.model.gpt import READOUTS, classifier_logits, message_lengths, set_readout, to_classifier
from llm_zero.model.gpt import GPTModel

TINY = {"vocab_size": 50257, "context_length": 32, "emb_dim": 16, "n_heads": 2, "n_layers": 2, "drop_rate": 0.0, "qkv_bias": True}




@pytest.fixture(scope="module")
def records(): return load_sms_spam()


@pytest.fixture(scope="module")
def tok(): return tiktoken.get_encoding("gpt2")


def test_sms_file_and_book_splits(records):
    assert len(records) == 5574 and sum(r["Label"] == "spam" for r in records) == 747
    balanced = create_balanced_dataset(records)
    tr, va, te = random_split(balanced, 0.7, 0.1)
    assert (len(tr), len(va), len(te)) == (1045, 149, 300)
    b_tr, b_va, b_te = book6.random_split(book6.create_balanced_dataset(pd.DataFrame(records)), 0.7, 0.1)
    assert (b_tr.to_dict("records"), b_va.to_dict("records"), b_te.to_dict("records")) == (tr, va, te)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 60), st.floats(0.05, 0.9), st.floats(0, 0.1), st.integers(0, 2**31 - 1))
def test_random_split_is_a_partition_matching_the_book(n, train_frac, val_frac, seed):
    recs = [{"Label": "ham", "Text": str(i)} for i in range(n)]
    tr, va, te = random_split(recs, train_frac, val_frac, seed=seed)
    assert sorted(r["Text"] for r in tr + va + te) == sorted(r["Text"] for r in recs)
    assert len(tr) == int(n * train_frac) and len(va) == int(n * val_frac)
    # the book's version always shuffles with pandas' sample(frac=1, random_state=123)
    b = book6.random_split(pd.DataFrame(recs, columns=["Label", "Text"]), train_frac, val_frac)
    assert [x.to_dict("records") for x in b] == list(random_split(recs, train_frac, val_frac, seed=123))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(LABELS), max_size=40))
def test_balanced_dataset_matches_pandas_sampling(labels):
    recs = [{"Label": lab, "Text": f"m{i}"} for i, lab in enumerate(labels)]
    if labels.count("ham") < labels.count("spam"):
        with pytest.raises(ValueError, match="cannot balance"): create_balanced_dataset(recs)
        return
    ours = create_balanced_dataset(recs)
    theirs = book6.create_balanced_dataset(pd.DataFrame(recs, columns=["Label", "Text"])).to_dict("records")
    assert ours == theirs


def test_spam_dataset_matches_book_from_csv(records, tok, tmp_path):
    tr, _, te = random_split(create_balanced_dataset(records), 0.7, 0.1)
    for name, recs in (("train", tr[:200]), ("test", te[:50])):
        df = pd.DataFrame(recs)
        df["Label"] = df["Label"].map({"ham": 0, "spam": 1})
        df.to_csv(tmp_path / f"{name}.csv", index=None)
    book_train = book6.SpamDataset(tmp_path / "train.csv", tok)
    ours = SpamDataset(tr[:200], tok)
    assert ours.max_length == book_train.max_length
    for ml in (None, 7, 300):
        a = SpamDataset(tmp_path / "test.csv", tok, max_length=ml)
        b = book6.SpamDataset(tmp_path / "test.csv", tok, max_length=ml)
        assert a.max_length == b.max_length and len(a) == len(b)
        for i in range(len(a)):
            assert torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1], b[i][1])


def test_bad_labels_name_the_record(tmp_path, tok):
    p = tmp_path / "sms.tsv"
    p.write_text("ham\tok\nspam\twin\nSPAM?\tcall now\n")
    with pytest.raises(ValueError, match=r"line 3 has label 'SPAM\?'; expected one of \('ham', 'spam'\)"):
        load_sms_spam(p)
    p.write_text("ham no tab here\n")
    with pytest.raises(ValueError, match="expected 'label<TAB>message'"): load_sms_spam(p)
    with pytest.raises(ValueError, match="Record 1 has label 2"):
        SpamDataset([{"Label": 1, "Text": "a"}, {"Label": 2, "Text": "b"}], tok)
    with pytest.raises(ValueError, match="Record 0 must be a dict with keys 'Label' and 'Text'"):
        SpamDataset([("ham", "hi")], tok)


def _synthetic_loaders(seed=0, n=48, length=12, vocab=300):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (n, length), generator=g)
    y = (x[:, :3].sum(1) % 2)  # a learnable rule
    ds = list(zip(x, y))
    return DataLoader(ds[:32], batch_size=8, shuffle=False), DataLoader(ds[32:], batch_size=8)


def _tiny_classifier(seed=0, vocab=300, **kw):
    torch.manual_seed(seed)
    return to_classifier(GPTModel({**TINY, "vocab_size": vocab}), **kw)


def test_loss_accuracy_and_training_match_the_book():
    train_loader, val_loader = _synthetic_loaders()
    ours = _tiny_classifier(trainable_blocks=-1)
    theirs = copy.deepcopy(ours)
    assert calc_accuracy_loader(val_loader, ours, "cpu") == book6.calc_accuracy_loader(val_loader, theirs, "cpu")
    assert calc_loss_loader(val_loader, ours, "cpu", num_batches=1) == pytest.approx(
        book6.calc_loss_loader(val_loader, theirs, "cpu", num_batches=1), abs=1e-6)
    opt_a = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=1e-3)
    opt_b = torch.optim.AdamW([p for p in theirs.parameters() if p.requires_grad], lr=1e-3)
    a = train_classifier_simple(ours, train_loader, val_loader, opt_a, "cpu", 2, 2, 2, verbose=False)
    b = book6.train_classifier_simple(theirs, train_loader, val_loader, opt_b, "cpu", 2, 2, 2)
    assert a[4] == b[4]
    for xs, ys in zip(a[:4], b[:4]):
        assert xs == pytest.approx(ys, abs=1e-5)


def test_to_classifier_freezes_all_but_the_top():
    m = _tiny_classifier()
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("trf_blocks.1.", "final_norm.", "out_head.")) for n in trainable)
    assert {"out_head.weight", "out_head.bias", "final_norm.scale"} <= trainable
    assert not any(n.startswith("trf_blocks.0.") for n in trainable)
    head_only = _tiny_classifier(trainable_blocks=0)
    assert {n for n, p in head_only.named_parameters() if p.requires_grad} == {"out_head.weight", "out_head.bias", "final_norm.scale", "final_norm.shift"}
    with pytest.raises(ValueError, match="trainable_blocks must be -1 or between 0 and 2"): _tiny_classifier(trainable_blocks=3)
    with pytest.raises(ValueError, match="num_classes must be at least 2"): _tiny_classifier(num_classes=1)


def test_classify_review_matches_book_and_rejects_language_models(tok):
    m = _tiny_classifier(vocab=50257)
    for text in ["WIN a free prize now!!!", "see you at dinner", "x" * 400]:
        for ml in (8, 32, 40):
            assert classify_review(text, m, tok, "cpu", max_length=ml) == book6.classify_review(text, m, tok, "cpu", max_length=min(ml, 32))
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="needs a 2-class classifier.*language model"):
        classify_review("hi", GPTModel(TINY), tok, "cpu")


@settings(max_examples=20, deadline=None)
@given(st.lists(st.lists(st.integers(0, 298), min_size=1, max_size=12), min_size=1, max_size=5),
       st.integers(0, 4), st.sampled_from(READOUTS))
def test_readouts_of_a_padded_batch(messages, extra, readout):
    "last_token and mean read a right-padded row as its message alone, unpadded; last reads the last position."
    pad, width = 299, max(map(len, messages)) + extra
    m = set_readout(_tiny_classifier(seed=1).eval(), readout, pad)
    batch = torch.tensor([ids + [pad] * (width - len(ids)) for ids in messages])
    with torch.no_grad():
        got = classifier_logits(m, batch)
        alone = [m(torch.tensor([ids]))[0] for ids in messages]
        padded = m(batch)
    want = {"last": padded[:, -1], "last_token": torch.stack([a[-1] for a in alone]),
            "mean": torch.stack([a.mean(0) for a in alone])}[readout]
    torch.testing.assert_close(got, want)
    assert message_lengths(batch, pad).tolist() == [len(ids) for ids in messages]


def test_loss_accuracy_and_classify_review_use_the_reading(tok):
    "The loss, the accuracy and classify_review all read through classifier_logits."
    pad = tok.eot_token
    m = set_readout(_tiny_classifier(vocab=50257, seed=2).eval(), "last_token", pad)
    texts = ["WIN a free prize now!!!", "see you at dinner", "call me", "ok"]
    x = torch.tensor([ids + [pad] * (10 - len(ids)) for ids in map(tok.encode, texts)])
    y = torch.tensor([1, 0, 0, 1])
    with torch.no_grad():
        last_tokens = torch.stack([m(torch.tensor([tok.encode(t)]))[0, -1] for t in texts])
        assert calc_loss_batch(x, y, m, "cpu").item() == pytest.approx(
            torch.nn.functional.cross_entropy(last_tokens, y).item(), abs=1e-5)
    loader = DataLoader(list(zip(x, y)), batch_size=3)
    assert calc_accuracy_loader(loader, m, "cpu") == (last_tokens.argmax(-1) == y).float().mean().item()
    for text in texts:  # the answer no longer depends on how far the message is padded
        answers = {classify_review(text, m, tok, "cpu", max_length=ml) for ml in (len(tok.encode(text)), 20, 32)}
        assert answers == {"spam" if m(torch.tensor([tok.encode(text)]))[0, -1].argmax() == 1 else "not spam"}
    with pytest.raises(ValueError, match="reads id 50256 as padding, not 0; pass pad_token_id=50256"):
        classify_review("hi", m, tok, "cpu", max_length=8, pad_token_id=0)
    with pytest.raises(ValueError, match="readout must be one of last, last_token, mean; got 'first'"):
        set_readout(m, "first", pad)
    with pytest.raises(ValueError, match="readout 'mean' needs the pad_token_id"):
        set_readout(m, "mean")


def test_bag_of_words_baseline_reaches_the_optimum(records):
    tr, va, te = random_split(create_balanced_dataset(records), 0.7, 0.1)
    texts, labels = [r["Text"] for r in tr], [LABELS.index(r["Label"]) for r in tr]
    bow = BagOfWordsBaseline().fit(texts, labels)
    bow.w.grad = bow.b.grad = None
    bow.objective(bow.features(texts), torch.tensor(labels, dtype=torch.float64)).backward()
    assert torch.cat([bow.w.grad, bow.b.grad.view(1)]).norm() < 1e-5   # stationary point of a convex objective
    assert bow.accuracy(te) > 0.93
    toy = BagOfWordsBaseline().fit(["free prize", "free cash", "see you", "you ok"], [1, 1, 0, 0])
    assert toy.predict(["cash prize", "ok see"]) == [1, 0]


def test_plot_values_draws_the_baseline():
    fig = plot_values([1, 2], [8, 16], [0.5, 0.9], [0.4, 0.8], label="accuracy", baseline=0.95)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "Accuracy" and any(list(l.get_ydata()) == [0.95, 0.95] for l in ax.get_lines())


def test_tiny_base_model_is_pretrained_and_cached(tok):
    from llm_zero.data.corpora import load_text
    from llm_zero.finetune.classify import TINY_GPT_CONFIG, load_base_model
    from llm_zero.train.pretrain import calc_loss_batch as lm_loss
    a, b = load_base_model(), load_base_model()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    ids = torch.tensor(tok.encode(load_text()[200_000:210_000])[:8 * 33]).view(8, 33)
    torch.manual_seed(0)
    untrained = GPTModel(TINY_GPT_CONFIG).eval()
    with torch.no_grad():
        trained_loss = lm_loss(ids[:, :-1], ids[:, 1:], a, "cpu").item()
        untrained_loss = lm_loss(ids[:, :-1], ids[:, 1:], untrained, "cpu").item()
    assert trained_loss < untrained_loss - 2, (trained_loss, untrained_loss)  # ln(50257) = 10.8 for a uniform guess


def test_tiny_base_pretraining_on_the_engine_loop_equals_a_plain_loop():
    "`_pretrain_tiny` runs on the shared TrainingLoop; it must give the weights of the plain loop it replaced."
    import tiktoken
    from llm_zero.data.corpora import load_text
    from llm_zero.finetune.classify import TINY_GPT_CONFIG, _pretrain_tiny
    from llm_zero.model.gpt import GPTModel
    from llm_zero.train.pretrain import calc_loss_batch as lm_loss_batch
    torch.set_num_threads(1)
    cfg = {**TINY_GPT_CONFIG, "n_layers": 1}
    ids = torch.tensor(tiktoken.get_encoding("gpt2").encode(load_text()))
    g = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    ref = GPTModel(cfg)
    opt = torch.optim.AdamW(ref.parameters(), lr=3e-3, weight_decay=0.1)
    for _ in range(3):
        starts = torch.randint(0, len(ids) - 17, (4,), generator=g)
        x = torch.stack([ids[s:s + 16] for s in starts])
        y = torch.stack([ids[s + 1:s + 17] for s in starts])
        opt.zero_grad(); lm_loss_batch(x, y, ref, "cpu").backward(); opt.step()
    got = _pretrain_tiny(cfg, 3, 4, 16, 3e-3, 7).state_dict()
    assert all(torch.equal(v, got[k]) for k, v in ref.state_dict().items())
