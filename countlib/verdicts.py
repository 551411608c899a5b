"""The verdicts a book decides, in one line, and the check that the README states them.

The Findings page and this check judge the same runs with the same code (`book_findings`), so
the README's line for a profile can be tested against a book built from a fresh clone:

    countlib book --profile smoke
    python -m countlib.verdicts --profile smoke --readme README.md     # exit 1 if they differ

The README states a profile's verdicts as one line, ``Verdicts of `smoke` on a fresh clone:``
followed by `verdict_line`'s text and a full stop.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from countlib import claims, tables
from countlib.claims import FAILS, HOLDS
from countlib.manifest import RunTable
from countlib.report import page_runs

#: Where `countlib book` writes the manifest of the runs it trained.
BOOK_MANIFEST = Path("book/generated/runs.json")


@dataclass(frozen=True)
class BookFindings:
    """A book's verdicts: the paper's claims read from its tables, the two read by the analysis
    tools (16 and 17), and countlib's own claims."""

    tables: list[claims.Finding]
    analysis: list[Any]
    own: list[claims.Finding]

    @property
    def paper(self) -> list[Any]:
        return [*self.tables, *self.analysis]


def book_findings(page: RunTable, rule: str = "best_ood") -> BookFindings:
    """Every claim judged on a page's runs, as the Findings page shows them."""
    from countlib.analysis import page as analysis  # loads torch: the analysis reads weights

    frames = {}
    for key in claims.needed_tables():
        spec = tables.get_table(key)
        frames[key] = tables.table_frame(page.of_table(spec.runs_of), spec, rule=rule)
    cells = claims.cells_of(frames)
    return BookFindings(
        claims.judge_all(cells),
        analysis.judge_page(page.runs),
        claims.judge_all(cells, claims.OWN_CLAIMS),
    )


def verdict_line(findings: Iterable[Any]) -> str:
    """The decided verdicts in one line: "holds 10, 15, 24 S4; does not hold 8, 16" (claim
    keys in the paper's order), or "none decided"."""
    findings = list(findings)
    parts = []
    for verdict in (HOLDS, FAILS):
        keys = [claim_key(f) for f in findings if f.verdict == verdict]
        if keys:
            parts.append(f"{verdict} {', '.join(sorted(keys, key=_order))}")
    return "; ".join(parts) or "none decided"


def claim_key(finding: Any) -> str:
    """A finding's claim key ("19", "24 S4"; an analysis claim's number)."""
    claim = finding.claim
    return str(claim.key if hasattr(claim, "key") else claim.number)


def _order(key: str) -> tuple[int, str]:
    number, _, part = key.partition(" ")
    return (int(number), part) if number.isdigit() else (10_000, key)


def stated_line(text: str, profile: str) -> str | None:
    """The verdicts a README states for ``profile`` (module docstring), or None."""
    found = re.search(rf"Verdicts of `{re.escape(profile)}` on a fresh clone: ([^.\n]+)\.", text)
    return found.group(1).strip() if found else None


def check(runs_dir: Path, manifest: Path, readme: Path, profile: str) -> list[str]:
    """Where the README's line for ``profile`` differs from the verdicts of the book's runs."""
    built = verdict_line(book_findings(page_runs(runs_dir, manifest=manifest)).paper)
    stated = stated_line(readme.read_text(), profile)
    if stated is None:
        return [f"{readme} states no line 'Verdicts of `{profile}` on a fresh clone: ...'"]
    if stated != built:
        return [f"{readme} says: {stated}", f"the book of {manifest} gives: {built}"]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--manifest", type=Path, default=BOOK_MANIFEST)
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    args = parser.parse_args(argv)
    problems = check(args.runs_dir, args.manifest, args.readme, args.profile)
    print("\n".join(problems) or f"{args.readme} states the verdicts of the {args.profile} book")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
