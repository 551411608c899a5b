"""Do a claim-deciding profile's verdicts survive a second draw?

Trains the profile (what its book trains; final runs are skipped) and its deciding cells again,
judges every claim on each draw with the Findings page's code
(`countlib.verdicts.book_findings`), and prints, for each verdict the first draw decides, the
second draw's verdict, then how many agree. The second draw has other seeds
(`countlib.robustness.SECOND_SEEDS`), or with ``--threads N`` the same seeds trained with N
torch threads a run (another rounding of the same arithmetic; its runs go to
``<runs-dir>-threads<N>``, as they keep their names). The target is all of them; a verdict
that flips is a draw, and the fix is a rule that leaves such a claim undecided.

    python benchmarks/verdict_robustness.py --profile smoke --runs-dir runs --workers 2
    python benchmarks/verdict_robustness.py --profile smoke --runs-dir runs --threads 2

Exit status 1 when a decided verdict differs. The first draw trains one torch thread a run
(the pool executor's default).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from countlib.book import manifest_for
from countlib.profiles import get_profile
from countlib.report import page_runs
from countlib.robustness import agreement, agreement_line, second_draw
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
    parser.add_argument(
        "--threads", type=int, help="second draw: the same seeds with this many threads a run"
    )
    args = parser.parse_args(argv)

    os.environ.pop("OMP_NUM_THREADS", None)  # the first draw: one thread a run
    first_runs = get_profile(args.profile)
    _train(first_runs, args.runs_dir, args.workers)
    first = book_findings(page_runs(args.runs_dir, profile=args.profile))

    spec = second_draw(args.profile, same_seeds=args.threads is not None)
    second_runs, second_dir, workers = expand(spec), args.runs_dir, args.workers
    draw = "on the second seeds"
    if args.threads is not None:
        # the pool sizes each worker's torch threads from it (`countlib.train.threads`)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        second_dir = args.runs_dir.with_name(f"{args.runs_dir.name}-threads{args.threads}")
        workers = max(1, args.workers // args.threads)
        draw = f"with {args.threads} torch threads a run"
    _train(second_runs, second_dir, workers)
    manifest = manifest_for(second_runs, scale=spec["name"], grid=spec)
    second = book_findings(manifest.subset().load(second_dir))

    found = agreement([*first.paper, *first.own], [*second.paper, *second.own])
    for item in found:
        print(f"claim {item.claim}: {item.first} | second draw: {item.second}")
    print(f"first draw:  {verdict_line([*first.paper, *first.own])}")
    print(f"second draw: {verdict_line([*second.paper, *second.own])}")
    print(f"{args.profile}: {agreement_line(found, draw)}")
    return 0 if all(item.agrees for item in found) else 1


if __name__ == "__main__":
    sys.exit(main())
