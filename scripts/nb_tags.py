"""Keep Jupyter Book cell tags in step with nbdev's cell directives.

Jupyter Book ignores nbdev's `#|` flags, so the flags are mirrored as tags:
- plumbing cells (`#| default_exp`, `#| hide`, the closing `nbdev_export()` call) get `remove-cell`,
  so readers of the book never see them;
- cells nbdev_test skips by default (`#| slow`, `#| eval: false`) and the export call get
  `skip-execution`, so the book build runs exactly what nbdev_test runs;
- exercise solutions (`#| code-fold: true`) get `hide-input`, a toggle that keeps them collapsed;
- cells whose output is the point, not their code (`#| echo: false`: a table or a paragraph of
  results rendered from saved numbers) get `hide-input` too, so the page shows the result first.

Usage: python scripts/nb_tags.py [--check] [NOTEBOOK ...]   (default: every notebook under nbs/)
With --check nothing is written and the exit status is 1 when a notebook needs tags.
"""
import json
import re
import sys
from pathlib import Path

DIRECTIVE = re.compile(r"^\s*#\|\s*(\S+)(.*)$", re.M)


def wanted_tags(source: str) -> set[str]:
    "The managed tags a code cell needs, from its `#|` directives."
    tags = set()
    for name, rest in DIRECTIVE.findall(source):
        name = name.rstrip(":")
        if name in ("default_exp", "hide"):
            tags.add("remove-cell")
        if (name, rest.strip().lower()) in (("code-fold", "true"), ("echo", "false")):
            tags.add("hide-input")
        if name == "slow" or (name == "eval" and rest.strip().lower() == "false"):
            tags.add("skip-execution")
    if re.search(r"\bnbdev_export\(\)", source):
        tags |= {"remove-cell", "skip-execution"}
    return tags


def fix(path: Path, check: bool) -> bool:
    "Add missing tags to the notebook at `path`; True when it was (or, with `check`, would be) changed."
    nb = json.loads(path.read_text(encoding="utf-8"))
    changed = False
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        want = wanted_tags(src)
        tags = cell.setdefault("metadata", {}).get("tags", [])
        if "skip-execution" in tags and "skip-execution" not in want:
            print(f"{path}: a cell tagged skip-execution has no #| slow or #| eval: false flag, so "
                  f"nbdev_test runs it but the book does not:\n    {src.splitlines()[0]}")
            changed = True
        missing = sorted(want - set(tags))
        if missing:
            print(f"{path}: cell needs tags {missing}:\n    {src.splitlines()[0]}")
            cell["metadata"]["tags"] = tags + missing
            changed = True
    if changed and not check:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


def main(argv):
    check = "--check" in argv
    paths = [Path(a) for a in argv if a != "--check"] or sorted(Path("nbs").rglob("*.ipynb"))
    changed = [p for p in paths if ".ipynb_checkpoints" not in p.parts and fix(p, check)]
    return 1 if (check and changed) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
