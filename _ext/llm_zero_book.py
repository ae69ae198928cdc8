"""Small Sphinx fixes for the llm_zero book.

sphinx-thebe registers its inline configuration script (`const THEBE_JS_URL = ...`) while the
HTML builder already exists, so Sphinx 7.4 adds it to the builder at once (file name `None`) and
again from its registry before writing (file name `''`); the two copies do not compare equal and
both reach every page, where the second `const` declaration is a JavaScript SyntaxError. Each
page's script list is de-duplicated here, keeping the first occurrence so the order is unchanged.
"""


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
    # Runs before the theme's handlers: Sphinx stops at the first handler that returns a value.
    app.connect("html-page-context", _dedupe_scripts, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
