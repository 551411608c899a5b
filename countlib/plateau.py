"""When a run has stopped improving: the plateau rule, shared by the trainer (which stops a run
on it) and the tables (which read a run still improving at its cap as undecided).

Torch-free: the Findings page imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

#: A plateau rule's tolerance unless a run sets its own: one point of accuracy.
PLATEAU_TOLERANCE = 0.01
#: The evaluations a run must go without improving, where its record sets no rule of its own
#: (runs trained to a fixed budget): the claim-deciding profiles' own rule
#: (`countlib.profiles`), so that every run is judged still improving or not the same way.
PLATEAU_EVALS = 3

#: (IND, OOD) of one evaluation; None where a split was not evaluated.
Point = tuple[float | None, float | None]


def plateaued(history: Sequence[Point], evaluations: int, tolerance: float) -> bool:
    """Whether a run whose trained evaluations gave ``history`` ((IND, OOD) each, in order)
    has plateaued: it has more than ``evaluations`` of them, and at none of the last
    ``evaluations`` did IND or OOD rise above the best before them by more than ``tolerance``.
    A plateau below the fit bar is a plateau too: that is what failing to fit means."""
    if len(history) <= evaluations:
        return False
    before, recent = history[:-evaluations], history[-evaluations:]
    for metric in (0, 1):
        earlier = [point[metric] for point in before if point[metric] is not None]
        later = [point[metric] for point in recent if point[metric] is not None]
        if later and (not earlier or max(later) > max(earlier) + tolerance):
            return False
    return True


def history_of(rows: Iterable[Mapping[str, object]], metrics: Mapping[str, str]) -> list[Point]:
    """(IND, OOD) per trained evaluation (step > 0), in step order, from evaluation rows
    (``step``, ``split``, ``metric``, ``value``: a run's eval.csv) and the run's recorded
    ``metrics`` (summary.json's: ``{"ind": "val/acc", "ood": "ood/extrapolation_acc"}``)."""
    values: dict[tuple[int, str], float | None] = {}
    for row in rows:
        step, value = int(str(row["step"])), row["value"]
        if step > 0:  # a value not computed (None, or empty in a CSV) is no evaluation of it
            number = None if value is None or value == "" else float(str(value))
            values[(step, f"{row['split']}/{row['metric']}")] = number
    steps = sorted({step for step, _ in values})
    ind, ood = metrics.get("ind"), metrics.get("ood")  # a task may have no OOD split
    return [(values.get((s, str(ind))), values.get((s, str(ood)))) for s in steps]
