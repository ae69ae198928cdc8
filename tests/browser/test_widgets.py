"""Chapter 9's widgets in a real headless Chromium that can reach no host but the local site.

The tokenizer playground must give the Python tokenizers' ids, the generation widgets PyTorch's
greedy tokens (the base model's logits and attention too), the chat widget an answer, all from the
site's own files alone. The speed each model reaches goes into _build/site-report/widgets.json.
"""
import json
import time

import pytest
import tiktoken
import torch
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from llm_zero.data import load_text
from llm_zero.model.generation import generate
from llm_zero.tokenizer.bpe import BPETokenizer
from llm_zero.tokenizer.unigram import UnigramTokenizer
from llm_zero.tokenizer.wordpiece import WordPieceTokenizer
from llm_zero.train.engine import load_model_from_checkpoint
from llm_zero.train.tokenizers import CharTokenizer
from llm_zero.export.onnx import tokenizer_for_web

from .conftest import ROOT, SCREENSHOTS, SITE, SITE_REPORT, start_chromium
from .test_site import load, own_errors

PAGE = "nbs/09_in_the_browser.html"
MODEL = ROOT / "experiments" / "python-docs-char"
BASE = ROOT / "experiments" / "base-cpu"
INSTRUCT = ROOT / "experiments" / "finetune-base" / "instruct-model"
SPEEDS = {}  # widget -> what the page measured, written to the site report
INPUTS = [
    "Hello, world!",
    "naïve café ☕ — 東京 🚀🚀 Ελληνικά",
    "  two  spaces\t\ttabs\n\n\nnewlines   ",
    "trailing whitespace \n",
    "it's 1,234.5 o'clock, they'll say; I'M",
    "x<|endoftext|>y<|endoftext|>",
    " \u00a0\u0085\ufeff\u3000\u2028 odd spaces ",
    "e\u0301 combining; family 👩\u200d👩\u200d👧",
    "",
    "def f(x):\n    return {'a': [1, 2]}  # done",
    "Crème BRÛLÉE, ΣΊΣΥΦΟΣ; 北京欢迎你!! unknown\u00ad\x07 ##hash [UNK] ▁meta ",
]


@pytest.fixture(scope="module")
def offline_browser():
    "Chromium whose every host name but the loopback address fails to resolve: the network is gone."
    drv = start_chromium("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def page(offline_browser, site_url):
    entries = load(offline_browser, f"{site_url}/{PAGE}")
    yield offline_browser
    errors = own_errors(entries + offline_browser.get_log("browser"), site_url)
    assert not errors, f"JavaScript errors on chapter 9: {errors}"


@pytest.fixture(scope="module")
def char_model():
    return load_model_from_checkpoint(MODEL)


def wait_state(browser, element, states, timeout=60):
    WebDriverWait(browser, timeout).until(lambda b: element.get_attribute("data-state") in states)
    return element.get_attribute("data-state")


def set_value(browser, element, value, event):
    "Set a form field as typing would, firing `event` (input or change)."
    browser.execute_script("arguments[0].value = arguments[1];"
                           "arguments[0].dispatchEvent(new Event(arguments[2]));", element, value, event)


def page_ids(browser, widget, tokenizer: str, text: str) -> tuple[str, list[int] | None]:
    "The playground's state and ids for `text` with `tokenizer`."
    set_value(browser, widget.find_element(By.CSS_SELECTOR, "select"), tokenizer, "change")
    set_value(browser, widget.find_element(By.CSS_SELECTOR, "textarea"), text, "input")
    state = wait_state(browser, widget, ("ready", "error"))
    return state, (json.loads(widget.get_attribute("data-ids")) if state == "ready" else None)


def python_tokenizers(char_model):
    "The playground's tokenizers in Python, trained as chapter 9 trains them, checked against the site's files."
    verdict = load_text("the-verdict")
    bpe = BPETokenizer.train(verdict, 1000, special_tokens=["<|endoftext|>"])
    wordpiece = WordPieceTokenizer.train(verdict, vocab_size=1000)
    unigram = UnigramTokenizer.train(verdict.splitlines(), 1000)
    for name, tok in [("verdict-bpe", bpe), ("verdict-wordpiece", wordpiece), ("verdict-unigram", unigram)]:
        assert json.loads((SITE / "web" / "tokenizers" / f"{name}.json").read_text()) == tokenizer_for_web(tok), name
    gpt2 = tiktoken.get_encoding("gpt2")
    return {"gpt2": lambda s: gpt2.encode(s, allowed_special="all"),
            "verdict-bpe": lambda s: bpe.encode(s, allowed_special="all"),
            "verdict-wordpiece": wordpiece.encode,
            "verdict-unigram": unigram.encode,
            "python-docs-char": char_model[1].encode}


def test_playground_ids_equal_python(page, char_model):
    widget = page.find_element(By.CSS_SELECTOR, ".llmz-playground")
    wait_state(page, widget, ("ready",))
    checked = 0
    for name, encode in python_tokenizers(char_model).items():
        for text in INPUTS:
            try: expected = encode(text)
            except ValueError:  # a character the char model never saw: the page must refuse it too
                expected = None
            state, ids = page_ids(page, widget, name, text)
            assert ids == expected, (name, text, state)
            checked += expected is not None
        if name == "gpt2":
            stats = widget.find_element(By.CSS_SELECTOR, ".llmz-stats").text
            assert stats == f"{len(expected)} tokens, {len(INPUTS[-1])} characters", stats
    assert checked >= 4 * len(INPUTS) + 3, "too few inputs reached the character tokenizer"
    page_ids(page, widget, "gpt2", "The quick brown fox can't jump 1,234 times. Ça marche 🙂 <|endoftext|>")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.execute_script("arguments[0].scrollIntoView()", widget)
    widget.screenshot(str(SCREENSHOTS / "09_tokenizer_playground.png"))


def run_widget(browser, widget, prompt, temperature, top_k, seed, tokens) -> list[int]:
    for cls, value in [("llmz-temperature", temperature), ("llmz-top-k", top_k), ("llmz-seed", seed),
                       ("llmz-max-tokens", tokens)]:
        set_value(browser, widget.find_element(By.CLASS_NAME, cls), str(value), "input")
    set_value(browser, widget.find_element(By.CLASS_NAME, "llmz-prompt"), prompt, "input")
    widget.find_element(By.CLASS_NAME, "llmz-run").click()
    assert wait_state(browser, widget, ("done", "error"), timeout=120) == "done", \
        widget.find_element(By.CLASS_NAME, "llmz-status").text
    return json.loads(widget.get_attribute("data-ids"))


@pytest.fixture(scope="module")
def generator_widget(page):
    return seen_widget(page, ".llmz-generate[data-model='python-docs-char']")


def seen_widget(page, selector):
    "The widget at `selector`, scrolled into view (it loads its model when seen) and ready."
    widget = page.find_element(By.CSS_SELECTOR, selector)
    page.execute_script("arguments[0].scrollIntoView()", widget)
    assert wait_state(page, widget, ("ready", "error"), timeout=180) == "ready", \
        widget.find_element(By.CLASS_NAME, "llmz-status").text
    return widget


@pytest.fixture(scope="module", autouse=True)
def speed_report():
    yield
    if SPEEDS:
        SITE_REPORT.mkdir(parents=True, exist_ok=True)
        (SITE_REPORT / "widgets.json").write_text(json.dumps(SPEEDS, indent=1) + "\n")


def test_char_tokenizer_with_special_ids_equals_python(page):
    # Char runs trained now end their vocabulary with <|endoftext|> and <|unk|>: the page's tokenizer,
    # built from the exported spec, must map unseen characters to <|unk|> and decode every id.
    tok = CharTokenizer.train(load_text("the-verdict"))
    spec = tokenizer_for_web(tok)
    script = ("const t = window.llmZero.tokenizerFromSpec(arguments[0]), ids = t.encode(arguments[1]);"
              "return [ids, ids.concat([arguments[2]]).map(t.decoder()).join('')];")
    unknown = 0
    for text in INPUTS:
        ids, text_back = page.execute_script(script, spec, text, tok.eos_id)
        assert ids == tok.encode(text), text
        assert text_back == tok.decode(ids + [tok.eos_id]), text
        unknown += ids.count(tok.unk_id)
    assert unknown >= 10, "too few inputs reached the <|unk|> id"


def test_greedy_generation_equals_pytorch_and_is_fast(page, generator_widget, char_model):
    model, tok, _ = char_model
    prompt, n = "The for statement", 200
    got = run_widget(page, generator_widget, prompt, 0, 40, 0, n)
    ids = torch.tensor([tok.encode(prompt)])
    expected = generate(model, ids, n, model.cfg["context_length"])[0, ids.shape[1]:].tolist()
    assert got == expected
    text = generator_widget.find_element(By.CLASS_NAME, "llmz-output").text
    assert text == prompt + tok.decode(expected)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    generator_widget.screenshot(str(SCREENSHOTS / "09_generation.png"))
    speed = float(generator_widget.get_attribute("data-tokens-per-second"))
    SPEEDS["python-docs-char"] = {"tokens": n, "tokens_per_second": speed, "sampling": "greedy"}
    # The speed goes into the site report, not an assertion: it is the shared machine's load.
    print(f"generation in headless Chromium: {speed:.1f} tokens/s ({n} tokens, greedy, full recomputation)")


def mulberry32(seed: int):
    "The page's generator, in Python."
    a = seed & 0xFFFFFFFF
    def imul(x, y): return (x * y) & 0xFFFFFFFF
    def rand():
        nonlocal a
        a = (a + 0x6D2B79F5) & 0xFFFFFFFF
        t = imul(a ^ (a >> 15), 1 | a)
        t = ((t + imul(t ^ (t >> 7), 61 | t)) & 0xFFFFFFFF) ^ t
        return ((t ^ (t >> 14)) & 0xFFFFFFFF) / 4294967296
    return rand


def page_sampling(model, ids, n, temperature, top_k, seed) -> list[int]:
    "The page's sampling rule (chapter 9, section 9.5) on PyTorch's logits, in float64 like JavaScript."
    rand, ids, out = mulberry32(seed), list(ids), []
    for _ in range(n):
        with torch.no_grad():
            logits = model(torch.tensor([ids[-model.cfg["context_length"]:]]))[0, -1].double()
        cut = logits.sort().values[-top_k]
        p = torch.where(logits >= cut, torch.exp((logits - logits.max()) / temperature), 0.0)
        u, nxt = rand() * p.sum().item(), None
        for i, pi in enumerate(p.tolist()):
            u -= pi
            if u < 0: nxt = i; break
        ids.append(nxt); out.append(nxt)
    return out


def test_seeded_sampling_is_the_pages_rule(page, generator_widget, char_model):
    model, tok, _ = char_model
    prompt = "Built-in Functions\n"
    first = run_widget(page, generator_widget, prompt, 0.8, 40, 7, 60)
    assert run_widget(page, generator_widget, prompt, 0.8, 40, 7, 60) == first  # same seed, same text
    assert run_widget(page, generator_widget, prompt, 0.8, 40, 8, 60) != first
    assert first == page_sampling(model, tok.encode(prompt), 60, 0.8, 40, 7)


def test_everything_comes_from_the_site(page, site_url):
    urls = page.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert any(u.endswith("/ort/ort-wasm-simd-threaded.wasm") for u in urls), urls
    assert any(u.endswith("/web/python-docs-char/model.onnx") for u in urls), urls
    assert all(u.startswith(site_url) for u in urls), [u for u in urls if not u.startswith(site_url)]


def test_without_webassembly_the_chapter_still_reads(site_url):
    drv = start_chromium()
    try:
        drv.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.WebAssembly;"})
        entries = load(drv, f"{site_url}/{PAGE}")
        for widget in drv.find_elements(By.CSS_SELECTOR, ".llmz-generate, .llmz-chat"):
            assert wait_state(drv, widget, ("unsupported",)) == "unsupported"
        assert "WebAssembly" in widget.find_element(By.CLASS_NAME, "llmz-status").text
        assert "9.2 The model as an ONNX graph" in drv.find_element(By.TAG_NAME, "article").text
        playground = drv.find_element(By.CSS_SELECTOR, ".llmz-playground")
        assert page_ids(drv, playground, "gpt2", "Hello, world!")[1] == [15496, 11, 995, 0]
        assert not own_errors(entries + drv.get_log("browser"), site_url)
    finally:
        drv.quit()


def test_while_loading_the_widget_says_so(site_url):
    drv = start_chromium("--window-size=1280,400")  # the widget starts off screen, so it waits
    try:
        load(drv, f"{site_url}/{PAGE}")
        widget = drv.find_element(By.CSS_SELECTOR, ".llmz-generate[data-model='python-docs-char']")
        time.sleep(1)
        assert widget.get_attribute("data-state") == "loading"
        assert "Loading" in widget.find_element(By.CLASS_NAME, "llmz-status").text
        assert not widget.find_element(By.CLASS_NAME, "llmz-run").is_enabled()
    finally:
        drv.quit()


def test_the_widgets_come_first(site_url):
    drv = start_chromium("--window-size=1280,900")
    try:
        load(drv, f"{site_url}/{PAGE}")
        tops = drv.execute_script(
            "return [...document.querySelectorAll('.llmz-playground, .llmz-generate, .llmz-chat')]"
            ".map((e) => e.getBoundingClientRect().top + window.scrollY)")
        assert len(tops) == 4 and tops[0] < 1000, tops  # the first widget on the first screen
        code = drv.execute_script("return document.querySelector('article div.cell')"
                                  ".getBoundingClientRect().top + window.scrollY")
        assert max(tops) < code, (tops, code)  # all of them before the first code cell
    finally:
        drv.quit()


@pytest.fixture(scope="module")
def base_model():
    return load_model_from_checkpoint(BASE)


def page_graph(page, name: str, ids: list[int]) -> dict:
    "The page's graph outputs for `ids`, as nested lists."
    return page.execute_script(
        "return window.llmZero.runGraph(arguments[0], arguments[1]).then((out) =>"
        " Object.fromEntries(Object.entries(out).map(([k, v]) => [k, {"
        " data: Array.from(v.data), dims: v.dims.map(Number)}])));", name, ids)


def test_base_logits_and_attention_in_the_page_equal_pytorch(page, base_model):
    model, tok, _ = base_model
    config = json.loads((SITE / "web" / "base-cpu" / "config.json").read_text())
    assert config["weights_dtype"] == "float16" and config["sha256"]["model.onnx"]
    ids = tok.encode("The old man walked to the river and said")
    out = page_graph(page, "base-cpu", ids)
    logits = torch.tensor(out["logits"]["data"]).view(out["logits"]["dims"])
    layer = config["attention_layer"]
    weights = []
    hook = model.trf_blocks[layer].att.dropout.register_forward_hook(
        lambda m, args, o: weights.append(o))
    with torch.no_grad():
        model.set_impl("reference")
        expected = model(torch.tensor([ids]))
        model.set_impl("fast")
    hook.remove()
    assert (logits - expected).abs().max() < 1e-3
    attention = torch.tensor(out["attention"]["data"]).view(out["attention"]["dims"])
    assert (attention - weights[0][0]).abs().max() < 1e-4


def test_base_generator_writes_pytorch_greedy_with_bars_and_attention(page, base_model):
    model, tok, _ = base_model
    widget = seen_widget(page, ".llmz-generate[data-model='base-cpu']")
    prompt, n = "Once upon a time", 40
    got = run_widget(page, widget, prompt, 0, 40, 0, n)
    ids = torch.tensor([tok.encode(prompt)])
    assert got == generate(model, ids, n, model.cfg["context_length"])[0, ids.shape[1]:].tolist()
    bars = widget.find_elements(By.CLASS_NAME, "llmz-bar-row")
    assert len(bars) == 8
    heads = widget.find_elements(By.CSS_SELECTOR, ".llmz-head option")
    assert len(heads) == model.cfg["n_heads"]
    painted = page.execute_script(
        "const c = arguments[0].querySelector('canvas.llmz-heatmap');"
        "return c.width > 0 && c.getContext('2d').getImageData(0, 0, c.width, c.height)"
        ".data.some((v, i) => i % 4 === 0 && v < 250)", widget)
    assert painted, "the attention map is blank"
    speed = float(widget.get_attribute("data-tokens-per-second"))
    SPEEDS["base-cpu"] = {"tokens": n, "tokens_per_second": speed, "sampling": "greedy"}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    widget.screenshot(str(SCREENSHOTS / "09_base_generation.png"))
    print(f"base model in headless Chromium: {speed:.1f} tokens/s ({n} tokens, greedy)")


def test_the_chat_widget_answers_as_pytorch_does(page):
    model, tok, _ = load_model_from_checkpoint(INSTRUCT)
    config = json.loads((SITE / "web" / "instruct" / "config.json").read_text())
    widget = seen_widget(page, ".llmz-chat")
    question = "Name three colours."
    set_value(page, widget.find_element(By.CLASS_NAME, "llmz-question"), question, "input")
    widget.find_element(By.CLASS_NAME, "llmz-ask").click()
    assert wait_state(page, widget, ("done", "error"), timeout=180) == "done", \
        widget.find_element(By.CLASS_NAME, "llmz-status").text
    answer, got = widget.get_attribute("data-answer"), json.loads(widget.get_attribute("data-ids"))
    assert answer.strip(), "the chat widget gave no answer"
    before, after = config["instruction_prompt"]
    ids = torch.tensor([tok.encode(before + question + after)])
    expected = generate(model, ids, len(got), model.cfg["context_length"])[0, ids.shape[1]:]
    assert got == expected.tolist()
    assert answer == tok.decode([i for i in got if i != tok.eos_id]).split("\n\n###")[0]
    speed = float(widget.get_attribute("data-tokens-per-second"))
    SPEEDS["instruct"] = {"tokens": len(got), "tokens_per_second": speed, "sampling": "greedy"}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    widget.screenshot(str(SCREENSHOTS / "09_chat.png"))
    print(f"chat in headless Chromium: {speed:.1f} tokens/s; answer {answer!r}")
