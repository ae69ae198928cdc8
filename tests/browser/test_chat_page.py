"""The chat page of `llm-zero serve` in headless Chromium: it streams an answer, the same one the
API gives, with no JavaScript errors and nothing loaded from elsewhere."""
import pytest
from openai import OpenAI
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from llm_zero.serve import create_app, load_served, running_server

# Counts the changes to the conversation (one record per DOM change, however the browser batches
# them), so the test can tell a stream from a single reply.
COUNT_UPDATES = """
window.updates = 0;
new MutationObserver((records) => { window.updates += records.length; })
  .observe(document.getElementById("log"), {childList: true, subtree: true, characterData: true});
"""


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory):
    "A tiny instruction-tuned checkpoint (chapter 7's format), served on a free loopback port."
    from llm_zero.finetune.cli import InstructConfig, finetune_instruct
    from llm_zero.train.config import load_config
    run = tmp_path_factory.mktemp("chat") / "instruct"
    cfg = load_config(None, ["model.base=tiny-gpt", "data.limit=40", "train.epochs=1", "train.lr=1e-3",
                             "generate.test_limit=1", "generate.max_new_tokens=2"], InstructConfig)
    finetune_instruct(cfg, run, progress=False)
    with running_server(create_app(*load_served(run))) as url:
        yield url


def test_chat_page_streams_an_answer(browser, chat_server):
    browser.get_log("browser")  # drop entries from earlier pages
    browser.get(chat_server + "/")
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "model").text == "instruct")
    browser.execute_script(COUNT_UPDATES)
    browser.find_element(By.ID, "input").send_keys("Name a colour.")
    browser.find_element(By.ID, "send").click()
    WebDriverWait(browser, 60).until(lambda b: b.execute_script(
        "const a = document.querySelector('.assistant');"
        "return a !== null && !a.classList.contains('streaming');"))
    bubble = browser.find_element(By.CSS_SELECTOR, ".assistant")
    assert "error" not in bubble.get_attribute("class"), bubble.text
    shown = browser.execute_script("return document.querySelector('.assistant').textContent;")

    client = OpenAI(base_url=f"{chat_server}/v1", api_key="x", max_retries=0)
    question = dict(model="instruct", messages=[{"role": "user", "content": "Name a colour."}],
                    temperature=0)  # the page's default
    reply = client.chat.completions.create(**question)
    assert shown == reply.choices[0].message.content and shown
    chunks = list(client.chat.completions.create(**question, stream=True))
    pieces = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    # user bubble, assistant bubble, one update per streamed piece, the cursor's class changes
    assert pieces > 1 and browser.execute_script("return window.updates;") >= pieces + 2

    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"JavaScript errors on the chat page: {errors}"
    assert browser.execute_script(
        "return performance.getEntriesByType('resource').map(r => r.name)"
        ".filter(n => !n.startsWith(location.origin) && !n.startsWith('data:'));") == []
