"""The book's Sphinx extension (_ext/llm_zero_book.py) prepares each notebook for readers."""
import importlib.util
import json
from pathlib import Path

from hypothesis import given, strategies as st

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("llm_zero_book", ROOT / "_ext" / "llm_zero_book.py")
book = importlib.util.module_from_spec(spec)
spec.loader.exec_module(book)


def shown(source: str, tags=()) -> dict:
    cell = {"cell_type": "code", "source": source, "metadata": {"tags": list(tags)}}
    book.reader_cell(cell)
    return cell


def test_nbdev_markers_are_dropped_and_exports_labelled():
    cell = shown("#| export\n#| hide\ndef f(x):\n    return x  # not #| a marker\n")
    assert cell["source"] == "def f(x):\n    return x  # not #| a marker\n"
    assert cell["metadata"]["tags"] == ["library"]


def test_cells_that_only_check_are_collapsed():
    assert shown("test_eq(f(1), 1)\ntest_fail(lambda: f())")["metadata"]["tags"] == ["hide-cell"]
    checks = "x = f(2)\nfor y in (1, 2):\n    assert f(y) == y\ntest_close(x, 2.0)"
    assert shown(checks)["metadata"]["tags"] == ["hide-cell"]
    assert shown(checks)["metadata"]["mystnb"]["code_prompt_show"] == "Show the checks"


def test_cells_that_show_something_stay_open():
    for source in ("x = f(1)\ny = f(2)\ntest_eq(x, 1)",     # mostly work, not checks
                   "test_eq(f(1), 1)\nf(2)",                 # ends on a value the page displays
                   "test_eq(f(1), 1)\nprint(f(2))",
                   "plt.plot([1, 2])\nassert True",
                   "%timeit f(1)"):                          # IPython magic: not Python
        assert shown(source)["metadata"]["tags"] == [], source


def test_solutions_are_collapsed_with_their_outputs():
    cell = shown("#| code-fold: true\n# Solution 1: f\nprint(f(1))\nassert f(1) == 1",
                 tags=["hide-input"])
    assert cell["metadata"]["tags"] == ["hide-cell"]
    assert cell["source"].startswith("# Solution 1")
    assert cell["metadata"]["mystnb"]["code_prompt_show"] == "Show solution 1"


@given(st.lists(st.sampled_from(["#| export", "#| hide", "#|eval: false", "x = 1", "# note", "",
                                 "  #| slow", "y = '#| not at the start'"]), max_size=8))
def test_no_marker_line_survives(lines):
    source = shown("\n".join(lines))["source"]
    assert not [line for line in source.splitlines() if line.lstrip().startswith("#|")]
    kept = "\n".join(x for x in lines if not x.lstrip().startswith("#|"))
    assert source.rstrip("\n") == kept.rstrip("\n")  # blank lines and code stay as they were


def test_notebooks_keep_their_json_shape():
    class Env:
        def doc2path(self, docname):
            return f"{docname}.ipynb"

    app = type("App", (), {"env": Env()})()
    nb = json.loads((ROOT / "nbs" / "04_gpt_model.ipynb").read_text())
    source = [json.dumps(nb)]
    book._prepare_notebook(app, "nbs/04_gpt_model", source)
    shown_nb = json.loads(source[0])
    assert len(shown_nb["cells"]) == len(nb["cells"])
    assert not any("#| export" in "".join(c["source"]) for c in shown_nb["cells"])


def test_result_cells_show_their_output_first():
    spec = importlib.util.spec_from_file_location("nb_tags", ROOT / "scripts" / "nb_tags.py")
    nb_tags = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nb_tags)
    assert nb_tags.wanted_tags("#| echo: false\nMarkdown(table)") == {"hide-input"}
    assert nb_tags.wanted_tags("#| echo: true\nMarkdown(table)") == set()


def test_headings_of_an_output_nest_under_its_section():
    from docutils import nodes
    from docutils.frontend import get_default_settings
    from docutils.parsers.rst import Parser
    from docutils.utils import new_document

    doc = new_document("page", get_default_settings(Parser))
    chapter, section = nodes.section(), nodes.section()
    output = nodes.container(classes=["cell_output"])
    report_title, report_part = nodes.rubric("", "Report", level=1), nodes.rubric("", "Part", level=2)
    output += [report_title, report_part]
    section += output
    prose_rubric = nodes.rubric("", "Notes", level=2)  # written in the chapter: left alone
    chapter += [section, prose_rubric]
    doc += chapter
    book._nest_output_headings(None, doc, "page")
    assert (report_title["level"], report_part["level"], prose_rubric["level"]) == (3, 4, 2)
