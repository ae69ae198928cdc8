"""House rules for the notebooks that are both the book and the library's source."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def cells(nb_path):
    return json.loads(nb_path.read_text(encoding="utf-8"))["cells"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT / "nbs")))
def test_title_comes_first(nb):
    first = cells(nb)[0]
    assert first["cell_type"] == "markdown" and "".join(first["source"]).startswith("# "), \
        f"{nb.name}: the first cell must be a markdown '# Title', before any code"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT / "nbs")))
def test_committed_without_outputs(nb):
    # The book executes every notebook anyway; stored outputs would only go stale and bloat diffs.
    with_outputs = [i for i, c in enumerate(cells(nb)) if c["cell_type"] == "code" and c.get("outputs")]
    assert not with_outputs, f"{nb.name}: cells {with_outputs} have stored outputs; clear them before committing"


def test_plumbing_and_slow_cells_are_tagged():
    res = subprocess.run([sys.executable, "scripts/nb_tags.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


def test_every_notebook_is_in_the_book():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = {toc["root"]} | {ch["file"] for part in toc["parts"] for ch in part["chapters"]}
    missing = [str(nb.relative_to(ROOT).with_suffix("")) for nb in NOTEBOOKS
               if str(nb.relative_to(ROOT).with_suffix("")) not in listed]
    assert not missing, f"notebooks missing from _toc.yml: {missing}"


def test_readers_do_not_see_export_plumbing():
    for nb in NOTEBOOKS:
        for c in cells(nb):
            src = "".join(c["source"])
            if c["cell_type"] == "code" and ("#| default_exp" in src or "nbdev_export()" in src):
                assert "remove-cell" in c["metadata"].get("tags", []), f"{nb.name}: visible plumbing cell: {src[:60]}"


# Chapters are every page of the book except the API reference and the landing page.
CHAPTERS = [nb for nb in NOTEBOOKS if nb.parent == ROOT / "nbs"]
HEADING_IN_CODE = re.compile(r"^\s*# #{1,6} \S", re.M)
SECTION_NUMBER = re.compile(r"^##+ (?:[0-9]+[a-z]?|[A-Z])(?:\.\d+)+ \S")
UNNUMBERED_SECTIONS = {"Summary", "Exercises"}
SOLUTION = re.compile(r"^#\| code-fold: true\n# Solution (\d+)\b")


def markdown_headings(nb_path):
    "The (level, line) of every markdown heading outside fenced code blocks."
    found = []
    for c in cells(nb_path):
        if c["cell_type"] != "markdown":
            continue
        fenced = False
        for line in "".join(c["source"]).splitlines():
            fenced ^= line.startswith("```")
            if not fenced and re.match(r"#{1,6} ", line):
                found.append((len(line) - len(line.lstrip("#")), line))
    return found


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT / "nbs")))
def test_no_markdown_swallowed_by_code_cells(nb):
    # A heading written as a comment ("# ## Heading") does not render: the prose after it is code.
    bad = [i for i, c in enumerate(cells(nb))
           if c["cell_type"] == "code" and HEADING_IN_CODE.search("".join(c["source"]))]
    assert not bad, f"{nb.name}: cells {bad} hold markdown headings as comments; make them markdown cells"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT / "nbs")))
def test_plumbing_is_hidden(nb):
    plumbing = re.compile(r"set_num_threads|\b_t0\b|executed in")
    visible = [i for i, c in enumerate(cells(nb)) if c["cell_type"] == "code"
               and plumbing.search("".join(c["source"]))
               and "remove-cell" not in c["metadata"].get("tags", [])
               and not "".join(c["source"]).startswith("#| export")]
    assert not visible, f"{nb.name}: cells {visible} show timers or thread settings; put them in a #| hide cell"


@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.name)
def test_sections_are_numbered(nb):
    unnumbered = [line for level, line in markdown_headings(nb) if level in (2, 3)
                  and line.lstrip("# ") not in UNNUMBERED_SECTIONS and not SECTION_NUMBER.match(line)]
    assert not unnumbered, f"{nb.name}: number these sections like the book (## 4.1 ...): {unnumbered}"


def chapter_number(nb_path) -> str:
    "The number a notebook's name gives its chapter: 02_text_data 2, 05k_speedrun 5k, E_lora E."
    m = re.match(r"(?:(\d+)([a-z]?)|([A-Z]))_", nb_path.name)
    return str(int(m[1])) + m[2] if m[1] else m[3]


def chapters_in_book_order():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    return [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb") in CHAPTERS]


@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.name)
def test_title_carries_the_chapter_number(nb):
    title = "".join(cells(nb)[0]["source"]).splitlines()[0]
    assert title.startswith(f"# {chapter_number(nb)}. "), \
        f"{nb.name}: title it '# {chapter_number(nb)}. ...' (one numbering scheme), not {title!r}"


def section_number_gaps(chapters) -> list[str]:
    """Sections numbered out of turn: each chapter's sections run N.1, N.2, ... and each section's
    subsections N.k.1, N.k.2, ...; a chapter spread over pages continues on its next page."""
    gaps, last = [], {}
    for nb in chapters:
        n = chapter_number(nb)
        section, sub = last.get(n, 0), 0
        for level, line in markdown_headings(nb):
            if level not in (2, 3) or line.lstrip("# ") in UNNUMBERED_SECTIONS:
                continue
            if level == 2:
                section, sub = section + 1, 0
                expected = f"{n}.{section}"
            else:
                sub += 1
                expected = f"{n}.{section}.{sub}"
            if line.split(" ")[1] != expected:
                gaps.append(f"{nb.name}: {line!r} should be numbered {expected}")
        last[n] = section
    return gaps


def test_section_number_gaps_can_fail(tmp_path):
    nb = tmp_path / "07_x.ipynb"
    nb.write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": [
        "# 7. X\n", "## 7.2 A\n", "### 7.2.1 B\n", "## 7.3 C\n", "## Summary\n"]}]}))
    assert section_number_gaps([nb]) == ["07_x.ipynb: '## 7.2 A' should be numbered 7.1",
                                         "07_x.ipynb: '### 7.2.1 B' should be numbered 7.1.1",
                                         "07_x.ipynb: '## 7.3 C' should be numbered 7.2"]
    second = tmp_path / "07b_y.ipynb"
    second.write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": ["## 7b.1 D"]}]}))
    more = tmp_path / "07_z.ipynb"  # a second page of chapter 7 continues its numbering
    more.write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": ["## 7.3 E"]}]}))
    assert section_number_gaps([nb, second, more])[3:] == []


def test_sections_are_numbered_without_gaps():
    gaps = section_number_gaps(chapters_in_book_order())
    assert not gaps, "\n".join(gaps)


def test_every_public_name_is_in_the_reference():
    # Each page under nbs/api/ shows one module or subpackage with show_reference(llm_zero.X); a
    # module whose public names reach none of those pages is missing from the site's reference.
    import importlib
    import pkgutil

    import llm_zero
    shown_modules = {m for nb in (ROOT / "nbs" / "api").glob("*.ipynb") for c in cells(nb)
                     for m in re.findall(r"show_reference\((llm_zero[\w.]*)\)", "".join(c["source"]))}
    on_pages = {id(getattr(importlib.import_module(m), n))
                for m in shown_modules for n in importlib.import_module(m).__all__}
    missing = []
    for info in pkgutil.walk_packages(llm_zero.__path__, "llm_zero."):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        missing += [f"{info.name}.{n}" for n in getattr(module, "__all__", [])
                    if id(getattr(module, n)) not in on_pages]
    assert not missing, (f"public names on no reference page: {missing}; re-export them from their "
                         "subpackage's __init__ (nbs/api/*.ipynb) or add a page calling show_reference")


def test_quoted_benchmark_numbers_match_results_md():
    # Chapters read benchmark figures from benchmarks/results.json; each must be the number
    # RESULTS.md reports in the section of the same name, so the two cannot drift apart.
    quoted = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", results, re.M | re.S))
    for name, numbers in quoted.items():
        if name.startswith("_"):
            continue
        section = numbers["section"]
        assert section in sections, f"results.json section {section!r} has no '## {section}' in RESULTS.md"
        start = sections[section].find(numbers["paragraph"])
        assert start >= 0, f"RESULTS.md's '## {section}' has no paragraph starting {numbers['paragraph']!r}"
        paragraph = sections[section][start:].split("\n\n")[0]
        for key, value in numbers.items():
            if isinstance(value, (int, float)):
                assert re.search(rf"(?<![\d.]){re.escape(f'{value:,}')}(?![\d])", paragraph), \
                    f"results.json {name}.{key} = {value} is not in RESULTS.md's {numbers['paragraph']!r} block"


# A measured figure: a number with a unit of time, speed, ratio or share ("109 s", "0.89x",
# "224 tokens/s", "5.8 MB/s", "within 1%"). Sizes of inputs ("1.1 MB of text") are settings, not
# measurements, so a bare MB is not one; shapes ("4 x 128") are not ratios.
MEASURED_FIGURE = re.compile(r"(?<![\w.,{])\d[\d,]*(?:\.\d+)?(?:\s?(?:ms|s|min|tokens/s|MB/s|%)"
                             r"|[x×])(?![\w/])")


def quoted_measurements(source):
    "Measured figures in a markdown cell that cites a benchmark (RESULTS.md or a bench_ script)."
    if "RESULTS.md" not in source and "bench_" not in source:
        return []
    return MEASURED_FIGURE.findall(re.sub(r"\$[^$]*\$", "", source))


def test_quoted_measurements_rule_can_fail():
    assert quoted_measurements("`bench_x.py`: this engine reached 1.802 in 109 s (0.89x).") == \
        ["109 s", "0.89x"]
    assert quoted_measurements("see `benchmarks/RESULTS.md`: 224 tokens/s, 5.8 MB/s, within 1%") == \
        ["224 tokens/s", "5.8 MB/s", "1%"]
    assert quoted_measurements("1.1 MB of text, a 4 x 128 model, 3 layers, `bench_bpe.py`") == []
    assert quoted_measurements("109 s, with no benchmark named") == []


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT / "nbs")))
def test_prose_does_not_restate_benchmark_figures(nb):
    # Prose that cites a benchmark must not retype its figures: they go stale when the benchmark is
    # re-run. A code cell renders them from benchmarks/results.json, which the test above checks.
    quoted = {i: q for i, c in enumerate(cells(nb)) if c["cell_type"] == "markdown"
              and (q := quoted_measurements("".join(c["source"])))}
    assert not quoted, (f"{nb.name}: markdown cells {quoted} restate benchmark figures; render them from "
                        "benchmarks/results.json in a code cell, or point at RESULTS.md without the number")


def exercise_numbers(nb_path):
    "The numbers of the items listed under the chapter's '## Exercises' heading."
    numbers, inside = [], False
    for c in cells(nb_path):
        if c["cell_type"] != "markdown":
            continue
        for line in "".join(c["source"]).splitlines():
            if re.match(r"#{1,6} ", line):
                inside = line == "## Exercises"
            elif inside and (m := re.match(r"(\d+)\. ", line)):
                numbers.append(int(m.group(1)))
    return numbers


@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.name)
def test_every_exercise_has_a_collapsed_solution(nb):
    numbers = exercise_numbers(nb)
    assert numbers, f"{nb.name}: a chapter ends with '## Exercises', a numbered list"
    solved = {}
    for c in cells(nb):
        src = "".join(c["source"])
        if c["cell_type"] == "code" and (m := SOLUTION.match(src)):
            assert "hide-input" in c["metadata"].get("tags", []), \
                f"{nb.name}: solution {m.group(1)} is not tagged hide-input (run python scripts/nb_tags.py)"
            assert re.search(r"\bassert\b|\btest_\w+\(", src), \
                f"{nb.name}: solution {m.group(1)} must check its answer (assert or test_eq/test_close/...)"
            solved[int(m.group(1))] = src
    missing = [n for n in numbers if n not in solved]
    assert not missing, (f"{nb.name}: exercises {missing} have no solution cell; add a code cell "
                         "starting '#| code-fold: true' then '# Solution N: ...' after the list")
