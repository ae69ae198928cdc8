"""Small Sphinx fixes for the llm_zero book.

sphinx-thebe registers its inline configuration script (`const THEBE_JS_URL = ...`) while the
HTML builder already exists, so Sphinx 7.4 adds it to the builder at once (file name `None`) and
again from its registry before writing (file name `''`); the two copies do not compare equal and
both reach every page, where the second `const` declaration is a JavaScript SyntaxError. Each
page's script list is de-duplicated here, keeping the first occurrence so the order is unchanged.

Notebooks are also prepared for readers as they are read (the files in nbs/ stay as they are):
nbdev's `#|` directive lines are dropped from the code shown, and cells that only check (mostly
`test_eq`/`test_fail`/`assert` lines) and exercise solutions are collapsed with their outputs
(`hide-cell`), so the page leads with the idea and keeps the checks one click away.

Headings inside a Markdown output (the evaluation report a chapter displays) become rubrics, which
keep their own level: a report's `# title` would be a second H1 on the page. They are moved below
the level of the section that displays them.
"""
import ast
import json
import re

from docutils import nodes

DIRECTIVE_LINE = re.compile(r"^[ \t]*#\|.*(?:\n|$)", re.M)
CHECKS = {"test", "test_close", "test_eq", "test_eq_type", "test_fail", "test_is", "test_ne",
          "test_shuffled", "test_sig", "test_stdout", "test_warns"}


def _is_check(stmt) -> bool:
    if isinstance(stmt, ast.Assert):
        return True
    call = stmt.value if isinstance(stmt, ast.Expr) else None
    return isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in CHECKS


def _count_checks(stmts) -> tuple[int, int]:
    "The numbers of check statements and of other statements in `stmts`, inside loops and `with`."
    checks = others = 0
    for stmt in stmts:
        if _is_check(stmt):
            checks += 1
        elif isinstance(stmt, (ast.For, ast.With, ast.If)):
            inner = _count_checks(stmt.body)
            checks, others = checks + inner[0], others + inner[1]
        else:
            others += 1
    return checks, others


def is_check_cell(code: str) -> bool:
    """Whether a code cell is there to check rather than to show: at least as many checks as other
    statements, a check last (so nothing is displayed), and no plot or print a reader should see."""
    try:
        body = ast.parse(code).body
    except SyntaxError:  # IPython magics: shown as they are
        return False
    if not body or re.search(r"\bplt\.|\bprint\(|\bdisplay\(", code):
        return False
    checks, others = _count_checks(body)
    return checks >= others and (_is_check(body[-1]) or isinstance(body[-1], (ast.For, ast.With)))


def reader_cell(cell: dict):
    """Drop the `#|` lines of a code cell, tag it `library` when it is exported, and collapse it
    when it only checks or is an exercise's solution."""
    source = "".join(cell["source"])
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    solution = re.search(r"^\s*#\|\s*code-fold:\s*true\b", source, re.M | re.I)
    if re.match(r"\s*#\|\s*export", source):
        tags.append("library")  # labelled on the page (llm_zero_book.css), now that `#|` is gone
    elif solution or is_check_cell(source):
        tags[:] = [t for t in tags if t != "hide-input"] + ["hide-cell"] * ("hide-cell" not in tags)
        # The toggle says what it hides (myst-nb reads its labels from the cell's metadata).
        n = re.search(r"^# Solution (\d+)", source, re.M)
        what = f"solution {n[1]}" if solution and n else "the solution" if solution else "the checks"
        cell["metadata"]["mystnb"] = {"code_prompt_show": f"Show {what}",
                                      "code_prompt_hide": f"Hide {what}"}
    cell["source"] = DIRECTIVE_LINE.sub("", source)


def _prepare_notebook(app, docname, source):
    if not str(app.env.doc2path(docname)).endswith(".ipynb"):
        return
    nb = json.loads(source[0])
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            reader_cell(cell)
    source[0] = json.dumps(nb, ensure_ascii=False)


def _nest_output_headings(app, doctree, docname):
    for rubric in list(doctree.findall(nodes.rubric)):
        # MyST records a heading's level on the rubric it makes; the writer makes it <h1>..<h6>
        key = next((k for k in ("heading-level", "level") if k in rubric), None)
        parents, node = [], rubric.parent
        while node is not None:
            parents.append(node)
            node = node.parent
        if key is None or not any("cell_output" in p.get("classes", []) for p in parents):
            continue
        depth = sum(isinstance(p, nodes.section) for p in parents)
        rubric[key] = min(6, rubric[key] + depth)


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (script.filename or "", tuple(sorted((k, str(v)) for k, v in script.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    # In place: later handlers (MathJax for pages with math) append to this same list.
    context["script_files"][:] = unique


def setup(app):
    app.connect("source-read", _prepare_notebook)
    app.connect("doctree-resolved", _nest_output_headings)
    # Runs before the theme's handlers: Sphinx stops at the first handler that returns a value.
    app.connect("html-page-context", _dedupe_scripts, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
