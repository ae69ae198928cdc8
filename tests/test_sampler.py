"""One sampler (issue 25): every temperature, top-k and top-p the options accept gives a valid
sample on any logits; the distribution it samples from matches a float64 reference; the page's
JavaScript sampler follows the same rules; `llm-zero generate` at the edges of the range works."""
import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from conftest import run_cli
from llm_zero.model.generation import sample_next_token, sampling_probs

ROOT = Path(__file__).resolve().parents[1]
INF = math.inf


def reference(logits: list[float], temperature: float, top_k=None, top_p=None) -> list[float]:
    "The sampling rules of chapter 4a written out in Python floats (float64), token by token."
    n = len(logits)
    if temperature == 0:
        return [1.0 if i == logits.index(max(logits)) else 0.0 for i in range(n)]
    kth = sorted(logits, reverse=True)[top_k - 1] if top_k and top_k < n else -INF
    kept = [x >= kth for x in logits]
    top = max(x for x, k in zip(logits, kept) if k)
    def weight(x):
        if x == top: return 1.0
        gap = x - top
        return 0.0 if gap == -INF or gap / temperature < -800 else math.exp(gap / temperature)
    w = [weight(x) if k else 0.0 for x, k in zip(logits, kept)]
    q = [v / math.fsum(w) for v in w]
    if top_p is not None and top_p < 1:
        q = [v if math.fsum(u for u in q if u > v) < top_p else 0.0 for v in q]
        q = [v / math.fsum(q) for v in q]
    return q


def mass_above(q: list[float], i: int) -> float:
    return math.fsum(u for u in q if u > q[i])


def float32_may_differ(q: list[float], i: int, top_p) -> bool:
    "Whether float32 probabilities may keep or drop token i where the float64 reference does not."
    below_range = q[i] < 1e-37
    at_boundary = top_p is not None and abs(mass_above(q, i) - top_p) < 1e-5
    tied_in_float32 = any(q[i] < u <= q[i] * (1 + 1e-6) for u in q)  # equal once rounded
    return below_range or at_boundary or tied_in_float32


def float32_tolerance(logits: list[float], temperature: float) -> float:
    "How far float32's softmax(z) may be from float64's: z = logits / T is rounded to float32."
    z = [abs(x / temperature) for x in logits if math.isfinite(x / temperature)]
    return 1e-6 + 2.4e-7 * max(z, default=0.0)


def normalized(p: torch.Tensor) -> list[float]:
    p = p.double()
    return (p / p.sum()).tolist()


# ---- Every accepted value gives a valid sample ---------------------------------------------------
LOGIT = st.one_of(st.floats(width=32, allow_nan=False),
                  st.sampled_from([-INF, INF, 0.0, 3.4e38, -3.4e38, 1e-45, -1.0, 1.0]))
TEMPERATURE = st.one_of(st.floats(0, 1.7e308, allow_nan=False, allow_infinity=False),
                        st.sampled_from([0.0, 5e-324, 1e-310, 1e-300, 1e-45, 1e-30, 1e300, 1.7e308]))
TOP_K = st.one_of(st.none(), st.integers(1, 10), st.integers(1, 10**30))
TOP_P = st.one_of(st.none(), st.floats(0, 1, exclude_min=True),
                  st.sampled_from([5e-324, 1e-300, 1e-45, 1.0]))


@settings(max_examples=250, deadline=None)
@given(logits=st.lists(LOGIT, min_size=1, max_size=12), temperature=TEMPERATURE, top_k=TOP_K,
       top_p=TOP_P, dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float64]),
       seed=st.integers(0, 2**32))
def test_every_accepted_value_gives_a_valid_sample(logits, temperature, top_k, top_p, dtype, seed):
    x = torch.tensor([logits], dtype=torch.float64).to(dtype)
    values = x.double()[0].tolist()  # what the sampler sees (bfloat16 rounds, 3.4e38 -> inf)
    assume(any(v > -INF for v in values))
    probs = sampling_probs(x, temperature, top_k, top_p)
    assert torch.isfinite(probs).all() and (probs >= 0).all() and probs.sum() > 0
    g = torch.Generator().manual_seed(seed)
    token = sample_next_token(x, temperature, top_k, top_p, generator=g).item()
    assert 0 <= token < len(values) and probs[0, token] > 0 and values[token] > -INF
    ref = reference(values, temperature, top_k, top_p)
    top = max(values)
    if temperature == 0 or all(q == 0 for q, v in zip(ref, values) if v != top):
        # The temperature underflows the gaps (or is 0): greedy, a most likely token.
        assert values[token] == top
        if values.count(top) == 1: assert token == values.index(top)


def test_the_cases_of_the_issue():
    logits = torch.randn(3, 50) * 4
    greedy = logits.argmax(dim=-1, keepdim=True)
    for t in (1e-300, 5e-324, 1e-40):
        assert torch.equal(sample_next_token(logits, t), greedy)
    for p in (1e-300, 5e-324, 1e-50):
        assert torch.equal(sample_next_token(logits, 1.0, top_p=p), greedy)
        assert torch.equal(sample_next_token(logits.bfloat16(), 1.3, top_p=p), greedy)
    uniform = sampling_probs(torch.zeros(2, 5), 1e-300)  # all-equal logits stay uniform
    assert torch.allclose(uniform, torch.full((2, 5), 0.2))


# ---- The distribution matches a float64 reference ------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(logits=st.lists(st.one_of(st.floats(-30, 30, width=32), st.just(-INF)), min_size=2,
                       max_size=40),
       temperature=st.floats(0.05, 20), top_k=st.one_of(st.none(), st.integers(1, 45)),
       top_p=st.one_of(st.none(), st.floats(0.01, 1)))
def test_distribution_matches_the_reference(logits, temperature, top_k, top_p):
    assume(any(v > -INF for v in logits))
    x = torch.tensor([logits])
    before = normalized(sampling_probs(x, temperature, top_k)[0])
    ref = reference(logits, temperature, top_k)
    assert max(abs(a - b) for a, b in zip(before, ref)) < float32_tolerance(logits, temperature)
    ours = sampling_probs(x, temperature, top_k, top_p)[0] > 0
    kept = [q > 0 for q in reference(logits, temperature, top_k, top_p)]
    for i, (a, b) in enumerate(zip(ours.tolist(), kept)):
        if a != b: assert float32_may_differ(ref, i, top_p), (i, a, b)


def test_sampled_frequencies_follow_the_distribution():
    logits = torch.tensor([[2.0, 1.0, 1.0, 0.0, -1.0, -torch.inf]])
    probs = sampling_probs(logits, 0.9, top_k=4, top_p=0.95)[0].double()
    probs /= probs.sum()
    g = torch.Generator().manual_seed(0)
    n = 20_000
    draws = torch.cat([sample_next_token(logits.expand(1000, -1), 0.9, 4, 0.95, generator=g)
                       for _ in range(n // 1000)]).flatten()
    freq = torch.bincount(draws, minlength=6).double() / n
    assert (freq - probs).abs().max() < 4 * math.sqrt(0.25 / n)  # about 4 standard deviations
    assert freq[4] == freq[5] == 0


# ---- The page's JavaScript sampler follows the same rules ----------------------------------------
NODE_HARNESS = """
const fs = require("fs"), vm = require("vm");
globalThis.window = globalThis;
globalThis.document = { currentScript: { src: "http://localhost/_static/llm_zero_web.js" },
                        readyState: "complete", querySelectorAll: () => [] };
vm.runInThisContext(fs.readFileSync(process.argv[1], "utf8"));
const cases = JSON.parse(fs.readFileSync(0, "utf8"));
const out = cases.map(([logits, t, k, p]) => {
  const x = Float32Array.from(logits, Number);  // the ONNX model's logits are float32
  const probs = window.llmZero.probabilities(x, t, k, p);
  const ids = [0, 0.5, 0.999999].map((u) => window.llmZero.sample(x, t, k, p, () => u));
  return { probs, ids };
});
fs.writeSync(1, JSON.stringify(out));  // synchronous: all of it before exit
process.exit(0);  // the page's MessageChannel would keep node running
"""

EDGE_LOGITS = [[2.0, 5.0, -INF, 4.999999, 1.0], [1.0, 3.0, 3.0, 3.0, 2.0], [0.0] * 6,
               [0.0, INF, INF, -INF], [-3.4e38, 3.4e38, 0.0, -1.0], [-INF, -INF, -7.5],
               [1e-45, 0.0, -1e-45, 2e-45], [-100.0, -100.5, -101.0, -250.0]]
EDGE_T = [0.0, 5e-324, 1e-300, 1e-30, 0.01, 0.7, 1.0, 2.0, 1e300, 1.7e308]
EDGE_K = [None, 1, 2, 3, 10**6]
EDGE_P = [None, 5e-324, 1e-300, 0.3, 0.5, 0.9, 1.0]


def js_cases():
    g = torch.Generator().manual_seed(0)
    cases = [(lg, t, k, p) for lg in EDGE_LOGITS for t in EDGE_T for k in EDGE_K for p in EDGE_P]
    for _ in range(150):
        n = int(torch.randint(2, 60, (1,), generator=g))
        lg = (torch.randn(n, generator=g) * float(torch.rand(1, generator=g) * 8)).tolist()
        t = float(torch.rand(1, generator=g)) * 2 + 0.05
        cases.append((lg, t, int(torch.randint(1, n + 5, (1,), generator=g)),
                      float(torch.rand(1, generator=g)) * 0.98 + 0.01))
    return cases


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_javascript_sampler_gives_what_python_gives():
    cases = js_cases()
    payload = [[[repr(float(v)).replace("inf", "Infinity") for v in lg], t, k or 0,
                1 if p is None else p] for lg, t, k, p in cases]
    r = subprocess.run(["node", "-e", NODE_HARNESS, str(ROOT / "_static" / "llm_zero_web.js")],
                       input=json.dumps(payload), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for (lg, t, k, p), js in zip(cases, json.loads(r.stdout), strict=True):
        x = torch.tensor([lg], dtype=torch.float32)
        ours = sampling_probs(x, t, k, p)
        py = normalized(ours[0])
        assert all(v is not None for v in js["probs"]), (lg, t, k, p)  # no NaN in the page
        ref = reference(x[0].double().tolist(), t, k)
        for i, (a, b) in enumerate(zip(py, js["probs"])):
            if (a > 0) != (b > 0):  # the page computes in float64
                assert float32_may_differ(ref, i, p), (lg, t, k, p, i)
            elif p is None and t > 0:
                assert abs(a - b) < float32_tolerance(lg, t), (lg, t, k, p, i)
        if max(py) == 1.0:  # one token holds all the mass: both sides must pick it
            token = sample_next_token(x, t, k, p).item()
            assert js["ids"] == [token] * 3, (lg, t, k, p)


# ---- The command line ----------------------------------------------------------------------------
def test_generate_at_the_edges_of_the_accepted_range():
    ckpt = ROOT / "experiments" / "base-cpu"
    args = ["generate", "--checkpoint", ckpt, "--prompt", "The ", "--max-tokens", 8]
    code, greedy, err = run_cli(*args, "--temperature", 0)
    assert code == 0, err
    for extra in (["--temperature", "1e-300"], ["--temperature", "5e-324"],
                  ["--temperature", "1", "--top-p", "1e-300"],
                  ["--temperature", "1e300", "--top-k", "1"]):
        code, out, err = run_cli(*args, *extra)
        assert (code, out, err) == (0, greedy, ""), extra
    code, out, err = run_cli(*args, "--temperature", "1.7e308", "--top-p", "5e-324", "--top-k", 3)
    assert code == 0 and out.startswith("The "), err
