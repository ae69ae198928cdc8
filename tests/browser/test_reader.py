"""The reader's check: every page of the built book, read once in headless Chromium at the site's
default width (1280 px), must read like a book. One pass a page measures everything below; the
measurements (figures, overflowing code, progress boxes, headings) go into
`_build/reader_check.json`, which CI keeps with the screenshots.
"""
import json
import re

import pytest

from .conftest import SITE
from .test_site import load, toc_pages

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
  headings: [...article.querySelectorAll("h2, h3")].map((h) => [h.tagName, heading(h)]),
  code_cells: codeCells.length,
  overflows: codeCells.filter((p) => p.scrollWidth > p.clientWidth + 1).map((p) => ({
    first_line: text(p).split("\n")[0].slice(0, 100), px: p.scrollWidth - p.clientWidth})),
  output_overflows: [...article.querySelectorAll("div.cell_output pre")]
    .filter((p) => p.scrollWidth > p.clientWidth + 1).map((p) => p.scrollWidth - p.clientWidth),
  markers: codeCells.map(text).flatMap((t) => t.split("\n")).filter((l) => /^\s*#\|/.test(l)),
  pipe_tables: [...article.querySelectorAll("div.cell_output pre, div.cell_output p")]
    .map(text).filter((t) => /^\s*\|.*\|\s*\n\s*\|[\s:|-]*-{3,}[\s:|-]*\|?\s*$/m.test(t))
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
    zoomable: img.classList.contains("llmz-zoomable")})),
};
"""
# A progress bar may print a few lines (a final summary, one line per epoch): not a wall of frames.
MAX_PROGRESS_LINES, MAX_OVERFLOW_SHARE = 5, 0.05
SECTION = re.compile(r"^((?:\d+[a-z]?|[A-Z])(?:\.\d+)+)\s")


def number_gaps(headings, continued=False) -> list[str]:
    """Sections whose number does not follow the one before it (2.1, 2.2, 2.2.1, 2.3 ...); a page
    that continues its chapter (its title says so) may start after 1."""
    gaps, last = [], {}
    for tag, title in headings:
        m = SECTION.match(title)
        if not m:
            continue
        *parent, n = m.group(1).split(".")
        parent, depth = ".".join(parent), int(tag[1])
        prev = last.get(depth)
        expected = (int(prev[1]) + 1 if prev and prev[0] == parent else 1)
        if int(n) != expected and not (continued and depth == 2 and prev is None):
            gaps.append(title)
        last[depth] = (parent, n)
        last.pop(depth + 1, None)
    return gaps


def test_number_gaps_finds_gaps():
    assert number_gaps([("H2", "2.2 A"), ("H3", "2.2.1 B"), ("H2", "2.3 C")], continued=True) == []
    assert number_gaps([("H2", "2.2 A"), ("H2", "2.3 C")]) == ["2.2 A"]
    assert number_gaps([("H2", "7.2 A"), ("H2", "7.3 B"), ("H2", "7.6 C")]) == ["7.2 A", "7.6 C"]
    assert number_gaps([("H2", "2.1 A"), ("H3", "2.1.2 B")]) == ["2.1.2 B"]
    assert number_gaps([("H2", "5k.1 A"), ("H3", "5k.1.1 B"), ("H2", "5k.2 C"), ("H3", "5k.2.1 D")]) == []


@pytest.fixture(scope="module")
def report(browser, site_url):
    pages = {}
    for page in toc_pages():
        if not (SITE / f"{page}.html").exists():
            continue  # test_site's page test fails for a missing page
        load(browser, f"{site_url}/{page}.html")
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
    assert not failing(report, lambda m: number_gaps(m["headings"], "(continued)" in "".join(m["h1"])))
