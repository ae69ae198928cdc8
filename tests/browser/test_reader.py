"""The reader's check: every page of the built book, read once in headless Chromium at the site's
default width (1280 px), must read like a book. One pass a page measures everything below; the
measurements (figures, overflowing code, progress boxes, headings) go into
`_build/reader_check.json`, which CI keeps with the screenshots.
"""
import json
import re

import pytest

from .conftest import SITE
from .test_site import load, page_title, toc_pages

# Runs inside the page: collapsed cells are opened first so that they are measured too.
MEASURE = r"""
document.querySelectorAll("article details").forEach((d) => { d.open = true; });
const article = document.querySelector("article.bd-article") || document.querySelector("article");
const text = (el) => (el.innerText || "").replace(/\r/g, "\n");
const heading = (h) => { const c = h.cloneNode(true);
  c.querySelectorAll(".headerlink").forEach((a) => a.remove()); return c.textContent.trim(); };
const codeCells = [...article.querySelectorAll("div.cell div.cell_input pre")];
const cells = [...article.querySelectorAll("div.cell")];
return {
  h1: [...article.querySelectorAll("h1")].map(heading),
  headings: [...article.querySelectorAll("h2:not(.rubric), h3:not(.rubric)")].map((h) => [h.tagName, heading(h)]),
  code_cells: codeCells.length,
  overflows: codeCells.filter((p) => p.scrollWidth > p.clientWidth + 1).map((p) => ({
    first_line: text(p).split("\n")[0].slice(0, 100), px: p.scrollWidth - p.clientWidth})),
  output_overflows: [...article.querySelectorAll("div.cell_output pre")]
    .filter((p) => p.scrollWidth > p.clientWidth + 1).map((p) => p.scrollWidth - p.clientWidth),
  markers: codeCells.map(text).flatMap((t) => t.split("\n")).filter((l) => /^\s*#\|/.test(l)),
  pipe_tables: [...article.querySelectorAll("div.cell_output pre, div.cell_output p")]
    .map(text).filter((t) => /\|\s*:?[-\u2013\u2014]+:?\s*\|/.test(t))  // a |---| rule (or |—|) as text
    .map((t) => t.slice(0, 80)),
  progress: cells.map((c) => ({
    boxes: [...c.querySelectorAll("div.cell_output > div.output")]
      .filter((o) => /\d+%\|/.test(text(o))).length,
    frames: [...c.querySelectorAll("div.cell_output pre")]
      .flatMap((p) => text(p).split("\n")).filter((l) => /\d+%\|.*\|/.test(l)).length,
  })).filter((p) => p.frames > 0),
  images: [...article.querySelectorAll("img")].map((img) => ({
    src: img.getAttribute("src").slice(0, 80), complete: img.complete,
    natural: [img.naturalWidth, img.naturalHeight], shown: [img.clientWidth, img.clientHeight],
    zoomable: img.classList.contains("llmz-zoomable"),
    // myst-nb gives an image without alt text its own path as alt text
    alt: img.alt === img.getAttribute("src") ? "" : img.alt.trim(),
    caption: (img.closest("figure")?.querySelector("figcaption")?.innerText || "").trim()})),
};
"""
# The chapters that must teach with figures (issue 22): the pages of chapters 2 to 7 and of the
# appendices D and E, sub-chapters included; each shows at least MIN_FIGURES figures drawn by its
# own cells, each loaded, with alt text and a caption.
FIGURE_CHAPTERS, MIN_FIGURES = re.compile(r"nbs/(0[2-7][a-z]?|[DE])_"), 3
# Sub-chapter pages still short of MIN_FIGURES. The list can only shrink: a page on it that has
# reached the minimum fails the test until it is taken off.
SHORT_OF_FIGURES = {
    "nbs/02b_wordpiece", "nbs/04a_generate", "nbs/04b_gpt2_weights",
    "nbs/04c_rmsnorm_rope", "nbs/04f_llama_qwen_weights",
    "nbs/05a_fused_loss", "nbs/05b_config", "nbs/05c_run_tokenizers", "nbs/05d_token_data",
    "nbs/05f_evaluate", "nbs/05h_cli", "nbs/05i_english_mix",
    "nbs/05k_speedrun", "nbs/05m_ngram", "nbs/07b_finetune_cli",
    "nbs/07d_report",
    "nbs/07e_zero_to_chat",  # added 2026-12-07 with the page: its report card is one plot so far
}
# A progress bar may print a few lines (a final summary, one line per epoch): not a wall of frames.
MAX_PROGRESS_LINES, MAX_OVERFLOW_SHARE = 5, 0.05
SECTION = re.compile(r"^((?:\d+[a-z]?|[A-Z])(?:\.\d+)+)\s")  # "2.1 Title", "5k.4.1 Title"


def number_gaps(pages: dict) -> dict:
    """Per page, its sections numbered out of turn: chapter N's sections run N.1, N.2, ... and
    their subsections N.k.1, N.k.2, ...; a chapter spread over several pages (the same number
    before its title's '. ') continues on the next page, in the order of the table of contents."""
    gaps, last = {}, {}
    for page, m in pages.items():
        chapter = re.match(r"(\w+)\. ", m["h1"][0] if m["h1"] else "")
        if not chapter:
            continue  # the landing page and the API reference are not numbered
        n = chapter[1]
        section, sub = last.get(n, 0), 0
        for tag, title in m["headings"]:
            number = SECTION.match(title)
            if not number and title in ("Summary", "Exercises"):
                continue
            if tag == "H2":
                section, sub = section + 1, 0
                expected = f"{n}.{section}"
            else:
                sub += 1
                expected = f"{n}.{section}.{sub}"
            if not number or number[1] != expected:
                gaps.setdefault(page, []).append(f"{title!r} should be numbered {expected}")
        last[n] = section
    return gaps


def test_number_gaps_finds_gaps():
    def page(title, *headings):
        return {"h1": [title], "headings": [("H2" if h.count(".") == 1 else "H3", h + " x")
                                            for h in headings]}
    assert number_gaps({"a": page("2. A", "2.1", "2.1.1", "2.2"), "b": page("2. B", "2.3"),
                        "c": page("2a. C", "2a.1"), "i": page("Home", "Intro")}) == {}
    assert number_gaps({"p": page("7. P", "7.2", "7.3", "7.6")}) == {"p": [
        "'7.2 x' should be numbered 7.1", "'7.3 x' should be numbered 7.2",
        "'7.6 x' should be numbered 7.3"]}
    assert number_gaps({"p": page("5k. P", "5k.1", "5k.1.2")}) == {
        "p": ["'5k.1.2 x' should be numbered 5k.1.1"]}


@pytest.fixture(scope="module")
def report(browser, site_url, first_loads):
    pages = {}
    for page in toc_pages():
        if not (SITE / f"{page}.html").exists():
            continue  # test_site's page test fails for a missing page
        entries = load(browser, f"{site_url}/{page}.html")
        first_loads[page] = (entries, page_title(browser))  # for test_site's console test
        pages[page] = browser.execute_script(MEASURE)
    (SITE.parent / "reader_check.json").write_text(json.dumps(pages, indent=1))
    assert pages, "no page of the book was built"
    return pages


def failing(report, problem) -> dict:
    return {page: p for page, m in report.items() if (p := problem(m))}


def test_no_table_left_as_pipe_text(report):
    assert not failing(report, lambda m: m["pipe_tables"])


def test_code_fits_the_column(report):
    cells = sum(m["code_cells"] for m in report.values())
    wide = failing(report, lambda m: m["overflows"])
    share = sum(map(len, wide.values())) / max(cells, 1)
    assert share <= MAX_OVERFLOW_SHARE, (f"{share:.0%} of {cells} code cells scroll sideways, per "
                                         f"page: { {p: len(w) for p, w in wide.items()} } "
                                         "(their first lines: _build/reader_check.json)")
    assert not failing(report, lambda m: m["output_overflows"]), "text outputs scroll sideways"


def test_no_box_of_progress_frames(report):
    assert not failing(report, lambda m: [p for p in m["progress"]
                                          if p["frames"] > MAX_PROGRESS_LINES or p["boxes"] > 1])


def test_one_h1_a_page(report):
    assert not failing(report, lambda m: m["h1"] if len(m["h1"]) != 1 else None)


def test_no_nbdev_marker_visible(report):
    assert not failing(report, lambda m: m["markers"])


def test_no_broken_image(report):
    assert not failing(report, lambda m: [i["src"] for i in m["images"]
                                          if i["complete"] and i["natural"][0] == 0])


def test_wide_figures_open_full_size(report):
    assert not failing(report, lambda m: [i["src"] for i in m["images"] if i["shown"][0]
                                          and i["natural"][0] > 1.1 * i["shown"][0] and not i["zoomable"]])


def test_section_numbers_without_gaps(report):
    assert not number_gaps(report)


def figure_problems(pages: dict, short: set = frozenset()) -> dict:
    """Per chapter page (FIGURE_CHAPTERS), what keeps it from showing MIN_FIGURES figures, each
    loaded, with alt text and a caption; pages in `short` must still be short of them."""
    problems = {}
    for page, m in pages.items():
        if not FIGURE_CHAPTERS.match(page):
            continue
        shown = [i for i in m["images"] if i["natural"][0] > 0 and i["alt"] and i["caption"]]
        bare = [i["src"] for i in m["images"] if i["caption"] and not i["alt"]]
        found = []
        if bare:
            found.append(f"captioned figures without alt text: {bare}")
        if page in short and len(shown) >= MIN_FIGURES:
            found.append(f"shows {len(shown)} figures: take it off SHORT_OF_FIGURES")
        elif page not in short and len(shown) < MIN_FIGURES:
            found.append(f"shows {len(shown)} captioned figures with alt text; at least "
                         f"{MIN_FIGURES} are needed")
        if found:
            problems[page] = found
    return problems


def test_figure_problems_finds_problems():
    def page(*figures):
        return {"images": [{"src": f"f{k}.png", "natural": [0 if bad == "broken" else 600, 300],
                            "alt": "" if bad == "no alt" else "a plot",
                            "caption": "" if bad == "no caption" else "Fig. 1 A plot."}
                           for k, bad in enumerate(figures)]}
    good = page("", "", "")
    assert figure_problems({"nbs/05_pretraining": good, "nbs/07c_dpo": good,
                            "nbs/D_training_loop": good, "nbs/08_serve": page()}) == {}
    assert figure_problems({"nbs/05k_speedrun": page("")}, short={"nbs/05k_speedrun"}) == {}
    assert figure_problems({"nbs/04_gpt_model": page("", "broken", "no caption")}) == {
        "nbs/04_gpt_model": ["shows 1 captioned figures with alt text; at least 3 are needed"]}
    assert figure_problems({"nbs/E_lora": page("", "", "", "no alt")}) == {
        "nbs/E_lora": ["captioned figures without alt text: ['f3.png']"]}
    assert figure_problems({"nbs/02b_wordpiece": good}, short={"nbs/02b_wordpiece"}) == {
        "nbs/02b_wordpiece": ["shows 3 figures: take it off SHORT_OF_FIGURES"]}


def test_chapters_show_captioned_figures(report):
    assert not figure_problems(report, SHORT_OF_FIGURES)
