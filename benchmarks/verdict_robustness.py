"""Do a claim-deciding profile's verdicts survive a second draw of seeds?

Trains the profile (what its book trains; final runs are skipped) and its deciding cells again
with `countlib.robustness.SECOND_SEEDS`, judges every claim on each draw with the Findings
page's code (`countlib.verdicts.book_findings`), and prints, for each verdict the first draw
decides, the second draw's verdict, then how many agree. The target is all of them; a verdict
that flips is a draw of seeds, and the fix is a rule that leaves such a claim undecided.

    python benchmarks/verdict_robustness.py --profile smoke --runs-dir runs --workers 2

Exit status 1 when a decided verdict differs. Both draws train one torch thread per run (the
pool executor's), so another thread count, a second source of rounding, is not varied here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from countlib.book import manifest_for
from countlib.profiles import get_profile
from countlib.report import page_runs
from countlib.robustness import agreement, agreement_line, reseeded
from countlib.sweep import expand, run_sweep
from countlib.verdicts import book_findings, verdict_line


def _train(runs: list, runs_dir: Path, workers: int) -> None:
    report = run_sweep(runs, runs_dir, executor="pool", device="cpu", workers=workers)
    if report.failed:
        sys.exit(f"{len(report.failed)} runs failed; see their logs under {runs_dir}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    first_runs = get_profile(args.profile)
    _train(first_runs, args.runs_dir, args.workers)
    first = book_findings(page_runs(args.runs_dir, profile=args.profile))

    spec = reseeded(args.profile)
    second_runs = expand(spec)
    _train(second_runs, args.runs_dir, args.workers)
    manifest = manifest_for(second_runs, scale=spec["name"], grid=spec)
    second = book_findings(manifest.subset().load(args.runs_dir))

    found = agreement([*first.paper, *first.own], [*second.paper, *second.own])
    for item in found:
        print(f"claim {item.claim}: {item.first} | second seeds: {item.second}")
    print(f"first draw:  {verdict_line([*first.paper, *first.own])}")
    print(f"second draw: {verdict_line([*second.paper, *second.own])}")
    print(f"{args.profile}: {agreement_line(found)}")
    return 0 if all(item.agrees for item in found) else 1


if __name__ == "__main__":
    sys.exit(main())
