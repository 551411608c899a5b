"""What the selection sweeps chose, as data: ``experiments/chosen_settings.yaml``.

The claim-deciding profiles (`countlib.profiles`) train their claims' cells at learning rates and
budgets chosen on CPU by selection sweeps (``experiments/*selection*.yaml``), on in-distribution
accuracy only, by the rule of ``experiments/choose_lr.py``; each selection is reported in an
``experiments/*.md`` record. This module reads the choices from one YAML file, so that a profile
names the selection result it uses instead of retyping its numbers, and writes that file, so
that ``choose_lr.py --write`` can update it from the selection runs.

One entry per selected configuration:

- ``record``, ``round``: the ``experiments/*.md`` record that reports the selection, and which
  of its rounds; ``spec``: the sweep spec that trained the chosen runs;
- ``task``, ``config``: the configuration (model and model options, as the spec ran it);
- ``steps``: the longest budget the selection trained it for; ``lr``: the chosen lr; ``fits``:
  whether its best IND reached 95 %; ``first_fit``: the first evaluation at which it did (null
  where it did not, or where the record did not note it);
- hand-set, and kept when ``choose_lr.py --write`` updates the entry: ``budget``, the steps the
  profiles train when not the rule's (`Chosen.budget_steps`), and ``note``, why.

Plain YAML: no torch, so reading a profile's settings stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from countlib.paths import shipped_root

#: The file the profiles read (a checkout's ``experiments/``, beside the records it cites; a
#: wheel ships a copy, `countlib.paths`).
CHOSEN_SETTINGS = shipped_root() / "experiments" / "chosen_settings.yaml"

#: Fields ``choose_lr.py --write`` computes from the runs; the others are set by hand.
MEASURED = ("spec", "steps", "lr", "fits", "first_fit")
HAND_SET = ("budget", "note")
_FIELDS = (
    "record",
    "round",
    "spec",
    "task",
    "config",
    "steps",
    "lr",
    "fits",
    "first_fit",
    *HAND_SET,
)
_REQUIRED = ("record", "round", "spec", "task", "config", "steps", "lr", "fits")

HEADER = """\
# What the selection sweeps chose: the settings the claim-deciding profiles train with
# (countlib/profiles.py reads this file; countlib/selections.py describes every field).
# One entry per selected configuration, picked from the selection runs on in-distribution
# accuracy only by the rule of experiments/choose_lr.py: the lowest lr whose best IND reaches
# 95 %, else the highest IND. A profile trains an entry for `budget` steps if set by hand
# (`note` says why), else for its first fitting evaluation `first_fit`, else the selection's
# `steps`. Written by experiments/choose_lr.py, which keeps `budget` and `note`:
#   python experiments/choose_lr.py RUNS_DIR --write experiments/chosen_settings.yaml \\
#       --record experiments/RECORD.md --round N --spec experiments/SPEC.yaml
"""


@dataclass(frozen=True)
class Chosen:
    """One configuration's chosen settings, and the selection record they come from."""

    record: str  # experiments/claims_selection.md
    round: int
    spec: str  # experiments/claims_selection.yaml
    task: str
    config: Mapping[str, Any]  # model and model options
    steps: int
    lr: float
    fits: bool
    first_fit: int | None = None
    budget: int | None = None
    note: str = ""

    @property
    def budget_steps(self) -> int:
        """The steps a profile trains it for: the hand-set ``budget``, else the first fitting
        evaluation, else the whole budget the selection tried."""
        if self.budget is not None:
            return self.budget
        return self.first_fit if self.fits and self.first_fit is not None else self.steps

    @property
    def key(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """What identifies an entry: its record, task and configuration (not its round: a later
        round of one record may select a configuration again)."""
        return (self.record, self.task, tuple(sorted((k, str(v)) for k, v in self.config.items())))

    @property
    def label(self) -> str:
        """``mod10 transformer pe=sine layers=2 hidden=32 heads=4``."""
        options = " ".join(f"{k}={v}" for k, v in self.config.items() if k != "model")
        return f"{self.task} {self.config.get('model', '?')} {options}".strip()

    @property
    def source(self) -> str:
        """``experiments/claims_selection.md round 3``."""
        return f"{self.record} round {self.round}"

    @property
    def outcome(self) -> str:
        """What was chosen and how it trains: ``lr 0.003, 1500 steps, fitted at 1250; ...``."""
        fitted = f"fitted at {self.first_fit}" if self.first_fit is not None else "fitted"
        result = fitted if self.fits else f"did not fit within {self.steps}"
        text = f"lr {self.lr:g}, {self.budget_steps} steps, {result}"
        return text + (f"; {self.note}" if self.note else "")

    def matches(self, task: str, **config: Any) -> bool:
        return self.task == task and all(
            key in self.config and self.config[key] == value for key, value in config.items()
        )


def record_name(record: str) -> str:
    """``claims_selection`` for ``experiments/claims_selection.md``."""
    return Path(record).stem


def find_chosen(entries: Iterable[Chosen], record: str, task: str, **config: Any) -> Chosen:
    """The one entry of ``record`` (its file name without ``.md``, or its path) for ``task``
    whose configuration has ``config``; an error names what matched if not exactly one."""
    found = [
        entry
        for entry in entries
        if record in (entry.record, record_name(entry.record)) and entry.matches(task, **config)
    ]
    if len(found) != 1:
        what = f"{record}: {task} {config}"
        seen = "; ".join(entry.label for entry in found) or "none"
        raise ValueError(f"{CHOSEN_SETTINGS.name} must hold one entry for {what}, found {seen}")
    return found[0]


def load_chosen(path: str | Path = CHOSEN_SETTINGS) -> list[Chosen]:
    """The entries of a chosen-settings file, checked: every field known and of its type, every
    required one present, no configuration twice in a record."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: the selection results the claim-deciding profiles train with; it ships in "
            "the repository's experiments/ (a checkout, not an installed wheel)"
        )
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("selections"), list):
        raise ValueError(f"{path}: expected a mapping with a 'selections' list")
    entries = [_entry(path, index, item) for index, item in enumerate(data["selections"])]
    seen: dict[tuple, int] = {}
    for index, entry in enumerate(entries):
        if entry.key in seen:
            raise ValueError(
                f"{path}: entries {seen[entry.key]} and {index} are both {entry.record}: "
                f"{entry.label}"
            )
        seen[entry.key] = index
    return entries


def _entry(path: Path, index: int, item: Any) -> Chosen:
    where = f"{path}: entry {index}"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected a mapping, got {item!r}")
    unknown = sorted(set(item) - set(_FIELDS))
    missing = [key for key in _REQUIRED if item.get(key) is None]
    if unknown or missing:
        raise ValueError(f"{where}: unknown fields {unknown}, missing {missing}")
    types: dict[str, type | tuple[type, ...]] = {
        "record": str, "round": int, "spec": str, "task": str, "config": dict, "steps": int,
        "lr": (int, float), "fits": bool, "first_fit": (int, type(None)),
        "budget": (int, type(None)), "note": str,
    }  # fmt: skip
    for key, value in item.items():
        # bool is an int: a "steps: true" must not pass as 1
        if not isinstance(value, types[key]) or (isinstance(value, bool) and key != "fits"):
            raise ValueError(f"{where}: {key} = {value!r} is not a {types[key]}")
    if not math.isfinite(item["lr"]) or item["lr"] <= 0 or "model" not in item["config"]:
        raise ValueError(f"{where}: lr must be positive and config must name its model")
    return Chosen(**{**item, "lr": float(item["lr"])})


def _scalar(value: Any) -> str:
    """One YAML value on one line (a mapping in flow style)."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000)
    return text.removesuffix("\n...\n").strip()


def _order(entry: Chosen) -> tuple:
    """Record, round, task, then model, depth, width and the other options: reading order."""
    config = entry.config
    rest = sorted((k, str(v)) for k, v in config.items() if k not in ("model", "layers", "hidden"))
    return (
        entry.record,
        entry.round,
        entry.task,
        str(config["model"]),
        config.get("layers", 0),
        config.get("hidden", 0),
        rest,
    )


def format_chosen(entries: Iterable[Chosen]) -> str:
    """The file's text: `HEADER`, then the entries by record, round and task, one field a line;
    the same entries always give the same text, so a rewrite shows only what changed."""
    ordered = sorted(entries, key=_order)
    lines = [HEADER.rstrip("\n"), "selections:"]
    group = None
    for entry in ordered:
        if (entry.record, entry.round) != group:
            group = (entry.record, entry.round)
            lines.append(f"  # {entry.source}")
        fields = {name: getattr(entry, name) for name in _FIELDS}
        fields = {k: v for k, v in fields.items() if k in _REQUIRED or v not in (None, "")}
        fields["config"] = dict(entry.config)
        for number, (name, value) in enumerate(fields.items()):
            lines.append(f"  {'- ' if number == 0 else '  '}{name}: {_scalar(value)}")
    return "\n".join(lines) + "\n"


@dataclass
class Merge:
    """What updating a file with freshly chosen entries did."""

    entries: list[Chosen]
    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    not_in_file: list[str] = field(default_factory=list)


def merge_chosen(existing: Iterable[Chosen], fresh: Iterable[Chosen], *, add: bool) -> Merge:
    """``existing`` with each ``fresh`` entry in place of the one with its key (keeping the old
    entry's hand-set ``budget`` and ``note``); a fresh entry without one is added only if
    ``add``, else listed in ``not_in_file``: the profiles read only entries they name."""
    merge = Merge(list(existing))
    index = {entry.key: i for i, entry in enumerate(merge.entries)}
    for entry in fresh:
        i = index.get(entry.key)
        if i is None:
            if add:
                merge.entries.append(entry)
            (merge.added if add else merge.not_in_file).append(f"{entry.source}: {entry.label}")
            continue
        old = merge.entries[i]
        new = replace(entry, **{key: getattr(old, key) for key in HAND_SET})
        if new != old:
            what = [
                f"{k} {getattr(old, k)!r} -> {getattr(new, k)!r}"
                for k in _FIELDS
                if getattr(old, k) != getattr(new, k)
            ]
            merge.changed.append(f"{entry.source}: {entry.label}: {', '.join(what)}")
        merge.entries[i] = new
    return merge
