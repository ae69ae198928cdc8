"""The Kneser-Ney baseline (chapter 5m) against NLTK, a dictionary-based reference and the sum rule."""
import itertools
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_zero.core import InputError, InputTypeError, LLMZeroError
from llm_zero.eval.ngram import KneserNey, ngram_bits_per_byte
from llm_zero.train.tokenizers import CharTokenizer


def nltk_model(stream, order, discount):
    "NLTK's interpolated Kneser-Ney counted over one text, without sentence padding."
    # imported here: NLTK costs ~2 s to import, paid only by the pytest worker that runs this
    from nltk.lm import KneserNeyInterpolated
    from nltk.util import everygrams
    words = [str(t) for t in stream]
    lm = KneserNeyInterpolated(order, discount=discount)
    lm.fit([everygrams(words, max_len=order)], vocabulary_text=words)
    return lm


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("discount", [0.1, 0.75])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_nltk_with_its_choices(order, discount, seed):
    # NLTK: one discount at every order, and the continuation unigrams at the bottom (no discount,
    # no uniform floor). With those choices ours must give its probabilities, context by context,
    # for every context of up to order - 1 tokens (most never seen) and every token.
    V = 5
    stream = np.random.default_rng(seed).integers(0, V, 80).tolist()
    ref = nltk_model(stream, order, discount)
    ours = KneserNey(order, V, discount=[0] + [discount] * (order - 1)).fit(stream)
    compared = 0
    for n in range(order):
        for ctx in itertools.product(range(V), repeat=n):
            p = ours.distribution(list(ctx))
            # A lower-order context at the very start of the text differs: no token precedes its
            # n-gram there, yet NLTK counts that n-gram's last token among the context's
            # followers, so its distribution sums to more than one (or it divides by zero when
            # the context occurs nowhere else). Ours counts what its continuation counts hold.
            at_start = any(ctx[j:] == tuple(stream[:n - j]) for j in range(n))
            try: theirs = [ref.score(str(w), [str(t) for t in ctx]) for w in range(V)]
            except ZeroDivisionError:
                assert at_start, ctx
                continue
            if at_start and sum(theirs) > 1 + 1e-9:
                assert math.isclose(p.sum(), 1.0, abs_tol=1e-12)
                continue
            np.testing.assert_allclose(p, theirs, rtol=0, atol=1e-12)
            compared += 1
    assert compared >= 0.9 * sum(V**n for n in range(order))


def reference_kn(stream, order, V, discount=None):
    "P(w | ctx) by the formulas of chapter 5m, with dictionaries: slow and plain."
    grams = {k: Counter(tuple(stream[i:i + k]) for i in range(len(stream) - k + 1))
             for k in range(1, order + 1)}
    counts = {order: grams[order]}
    for k in range(1, order):  # continuation counts: distinct tokens before each k-gram
        counts[k] = Counter(g[1:] for g in grams[k + 1])

    def discounts(c):
        n = [sum(1 for v in c.values() if v == j) for j in (1, 2, 3, 4)]
        if discount is not None: return [discount] * 3
        if min(n) == 0: return [n[0] / (n[0] + 2 * n[1]) if n[0] else 0.5] * 3
        y = n[0] / (n[0] + 2 * n[1])
        d = [1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2]]
        return [min(max(x, 0), j + 1) for j, x in enumerate(d)]

    ds = {k: discounts(counts[k]) for k in counts}

    def p(w, ctx):
        k = len(ctx) + 1
        lower = p(w, ctx[1:]) if ctx else 1 / V
        followers = {g[-1]: c for g, c in counts[k].items() if g[:-1] == ctx}
        total = sum(followers.values())
        if total == 0: return lower
        d = ds[k]
        take = lambda c: d[min(c, 3) - 1]
        c = followers.get(w, 0)
        mass = sum(take(v) for v in followers.values())
        return ((c - take(c) if c else 0) + mass * lower) / total
    return p


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("discount", [None, 0.6])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_dictionary_reference(order, discount, seed):
    V = 4
    rng = np.random.default_rng(seed)
    stream = rng.integers(0, V, 400 if seed else 40).tolist()  # seed 0: too few for 3 discounts
    ref = reference_kn(stream, order, V, discount)
    ours = KneserNey(order, V, discount).fit(stream)
    for n in range(order):
        for ctx in itertools.product(range(V), repeat=n):
            np.testing.assert_allclose(ours.distribution(list(ctx)),
                                       [ref(w, ctx) for w in range(V)], rtol=1e-12, atol=0)


@pytest.mark.parametrize("seed", [1, 2])
def test_reference_uses_three_discounts(seed):
    # The comparison above must exercise modified Kneser-Ney, not only its one-discount fallback.
    lm = KneserNey(4, 4).fit(np.random.default_rng(seed).integers(0, 4, 400))
    assert [len(set(lv.discounts)) for lv in lm.levels[2:]] == [3, 3]


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 40), st.integers(1, 5), st.data())
def test_distributions_sum_to_one(V, order, data):
    stream = data.draw(st.lists(st.integers(0, V - 1), min_size=order, max_size=300))
    discount = data.draw(st.one_of(st.none(), st.just(0.0), st.floats(0.01, 1)))
    lm = KneserNey(order, V, discount).fit(stream)
    ctx = data.draw(st.lists(st.integers(0, V - 1), max_size=order + 2))
    p = lm.distribution(ctx)
    assert (p >= 0).all()
    assert math.isclose(p.sum(), 1.0, abs_tol=1e-9)
    if discount is None or discount > 0:  # some mass reaches the uniform floor: nothing impossible
        assert (p > 0).all()


def test_logprob_is_the_distribution_at_each_position():
    stream = np.random.default_rng(3).integers(0, 7, 200)
    lm = KneserNey(3, 7).fit(stream)
    text = np.random.default_rng(4).integers(0, 7, 30)
    expected = [math.log(lm.distribution(text[max(0, i - 2):i])[text[i]]) for i in range(1, 30)]
    np.testing.assert_allclose(lm.logprob(text), expected, rtol=1e-12)


def test_bits_per_byte_counts_the_decoded_bytes():
    tok = CharTokenizer.train("abcé ")
    train = tok.encode("abc abé cab " * 20)
    val = tok.encode("cab é abc")
    r = ngram_bits_per_byte(train, val, tok, order=2)
    lm = KneserNey(2, tok.vocab_size).fit(train)
    n_bytes = len("ab é abc".encode())  # the first token is context only; é is two bytes
    assert (r["tokens"], r["bytes"]) == (len(val) - 1, n_bytes)
    assert math.isclose(r["bits_per_byte"], -lm.logprob(val).sum() / math.log(2) / n_bytes)


@pytest.mark.parametrize("make, message", [
    (lambda: KneserNey(3, 10).fit([0.5, 1.5, 2.5]), "integer token ids"),
    (lambda: KneserNey(3, 10).fit([1, 2, 10]), "outside the vocabulary of 10"),
    (lambda: KneserNey(3, 10).fit([1, 2]), "at least 3 tokens"),
    (lambda: KneserNey(6, 4096), "use order <= 5"),
    (lambda: KneserNey(0, 10), "order must be at least 1"),
    (lambda: KneserNey(2, 10, discount=-0.1), "discount must be"),
    (lambda: KneserNey(2, 10).logprob([1, 2]), "Fit the model before scoring"),
    (lambda: ngram_bits_per_byte([1, 2, 3], [4], CharTokenizer("abcdefgh")), "at least 2"),
])
def test_bad_input_is_named(make, message):
    with pytest.raises(LLMZeroError, match=message) as e:
        make()
    assert isinstance(e.value, (InputError, InputTypeError))
    assert "\n" not in str(e.value)
