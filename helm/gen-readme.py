#!/usr/bin/env python3
"""Writes the chart README's table of values from values.yaml's `# --` comments (helm-docs
style: a `# -- text` comment, continued by the `#` lines under it, documents the key that
follows). The table goes between the README's `<!-- values:start -->` and `<!-- values:end -->`
markers; the rest of the README is written by hand.

    python3 helm/gen-readme.py          # rewrite the table
    python3 helm/gen-readme.py --check  # exit 1 if the README's table is stale (scripts/test)
"""

import re
import sys
from pathlib import Path

CHART = Path(__file__).resolve().parent / "ddtwatch"
START, END = "<!-- values:start -->", "<!-- values:end -->"
KEY = re.compile(r"^(\s*)([A-Za-z][\w.-]*):(.*)$")


def documented_values(text):
    """(key path, default as written, description) for every key with a `# --` comment."""
    rows, stack, doc = [], [], None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            doc = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if doc is not None:
                doc.append(stripped[1:].strip())
            continue
        m = KEY.match(line)
        if not m:
            if not stripped:
                doc = None if doc is not None and not doc[-1] else doc
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [key])
        if doc is not None:
            default = rest.split(" #")[0].strip() or "(see below)"
            rows.append((path, default, " ".join(d for d in doc if d)))
            doc = None
        if not rest or rest.startswith("#"):
            stack.append((indent, key))
    return rows


def table(rows):
    out = ["| key | default | description |", "|---|---|---|"]
    for path, default, text in rows:
        text = text.replace("|", "\\|")
        default = default.replace("|", "\\|")
        out.append(f"| `{path}` | `{default}` | {text} |")
    return "\n".join(out)


def main():
    readme = CHART / "README.md"
    current = readme.read_text()
    if START not in current or END not in current:
        sys.exit(f"{readme}: no {START} … {END} markers")
    rows = documented_values((CHART / "values.yaml").read_text())
    head, rest = current.split(START, 1)
    _, tail = rest.split(END, 1)
    wanted = f"{head}{START}\n{table(rows)}\n{END}{tail}"
    if "--check" in sys.argv:
        if wanted != current:
            sys.exit("helm/ddtwatch/README.md's values table is stale: run python3 helm/gen-readme.py")
        return
    readme.write_text(wanted)


if __name__ == "__main__":
    main()
