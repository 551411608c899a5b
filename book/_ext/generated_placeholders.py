"""Stand-in pages for the notebooks `countlib book` has not executed yet.

Every toc entry under ``generated/`` is a notebook that `countlib book` executes with papermill
into ``generated/<page>.ipynb``; that folder is git-ignored, so a fresh clone has none of them
and ``jupyter-book build book`` would warn once per page about a nonexisting document. Before
Sphinx looks for sources, this writes ``generated/<page>.md`` for each missing page, saying how
to produce it, and deletes that stand-in again once the page has a real source, so Sphinx never
sees two files for one page. Only files whose first line starts with ``MARKER`` are ever
rewritten or deleted.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

logger = logging.getLogger(__name__)

GENERATED = "generated/"
MARKER = "% countlib placeholder"

TEMPLATE = """\
{marker}: written by book/_ext/generated_placeholders.py while generated/{page}.ipynb is missing
# {title}

````{{note}}
This page has not been produced yet. `countlib book` executes its notebook with papermill into
`book/generated/{page}.ipynb`, and this checkout has no such file. From the repository root, run

```bash
countlib book --profile smoke --notebook {page}
```

to produce this page, or `countlib book --profile smoke` to produce every page of the book.
Either command trains (or reuses) the runs of the profile first, then rebuilds the book.
````
"""


def is_placeholder(path: Path) -> bool:
    with path.open(encoding="utf-8") as file:
        return file.readline().startswith(MARKER)


def title(page: str, notebooks: Path) -> str:
    """The first heading of the page's notebook, which the executed page keeps, if the page is
    named after one; otherwise its name in words (``table_A1``: "Table A1")."""
    notebook = notebooks / f"{page}.ipynb"
    if notebook.is_file():
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        first = next(("".join(c["source"]) for c in cells if c["cell_type"] == "markdown"), "")
        if first.startswith("# "):
            return first.splitlines()[0][2:].strip()
    words = page.replace("_", " ")
    return words[0].upper() + words[1:]


def sync(app: Sphinx, config: Config) -> None:
    srcdir = Path(app.srcdir)
    # `countlib book` runs papermill on the repository's notebooks/, next to the book
    notebooks = srcdir.parent / "notebooks"
    site_map = config.external_site_map
    missing: list[str] = []  # toc pages with no source but their stand-in
    removed: list[str] = []
    for docname in site_map:
        if not docname.startswith(GENERATED):
            continue
        placeholder = srcdir / f"{docname}.md"
        ours = placeholder.is_file() and is_placeholder(placeholder)
        sources = [s for s in config.source_suffix if (srcdir / f"{docname}{s}").is_file()]
        if ours:
            sources.remove(".md")
        if sources:
            if ours:
                placeholder.unlink()
                removed.append(docname)
            continue
        missing.append(docname)
        page = docname.removeprefix(GENERATED)
        text = TEMPLATE.format(
            marker=MARKER, page=page, title=site_map[docname].title or title(page, notebooks)
        )
        # an unchanged file keeps its mtime, so Sphinx does not re-read the page every build
        if not ours or placeholder.read_text(encoding="utf-8") != text:
            placeholder.parent.mkdir(parents=True, exist_ok=True)
            placeholder.write_text(text, encoding="utf-8")
    if missing:
        logger.info("[placeholders] not produced yet: %s", ", ".join(missing))
    if removed:
        logger.info("[placeholders] produced, stand-in removed: %s", ", ".join(removed))
        app.connect("env-get-outdated", partial(reread, set(removed)))


def reread(
    docnames: set[str],
    app: Sphinx,
    env: BuildEnvironment,
    added: set[str],
    changed: set[str],
    removed: set[str],
) -> set[str]:
    # Sphinx re-reads a page when its source is newer than the last build; a notebook copied
    # with its old mtime (cp -p, an unpacked archive) would otherwise keep the stand-in's HTML.
    return docnames


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinx_external_toc")
    # after sphinx-external-toc (priority 900) has parsed _toc.yml into config.external_site_map
    app.connect("config-inited", sync, priority=950)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
