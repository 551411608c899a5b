"""The runs a report is about: which profile or spec, which selection, which runs by config hash.

`countlib book` writes one `RunManifest` before it executes the pages; every page reads exactly
the runs it lists, identified by run name *and* config hash, whatever else lies in the runs
directory. Runs of other profiles written to the same directory (a smoke run beside a paper
run) never enter a cell; they are counted, so a page can say how many it ignored.

Plain JSON and pandas: no torch, so a page that only reads runs starts fast.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from countlib.results import DAMAGED, find_runs, load_runs
from countlib.train.records import RETRAIN_HINT


@dataclass(frozen=True)
class PlannedRun:
    run: str  # the run directory's name
    config_hash: str
    task: str
    model: str
    family: str
    tables: tuple[str, ...] = ()
    steps: int | None = None


@dataclass
class RunManifest:
    """What a book (or any report) shows: its scale label, its source and selection, its runs."""

    scale: str
    #: {"profile": name} or {"spec": the sweep spec}.
    source: dict[str, Any]
    runs: list[PlannedRun]
    #: The restrictions of the command (task, family, table), empty when it took everything.
    selection: dict[str, list[str]] = field(default_factory=dict)

    @property
    def source_label(self) -> str:
        if "profile" in self.source:
            return f"profile `{self.source['profile']}`"
        name = (self.source.get("spec") or {}).get("name")
        return f"spec `{name}`" if name else "a sweep spec"

    @property
    def selection_label(self) -> str:
        parts = [f"{key} {', '.join(values)}" for key, values in self.selection.items() if values]
        return f" (restricted to {'; '.join(parts)})" if parts else ""

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1, default=list) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> RunManifest:
        try:
            data = json.loads(Path(path).read_text())
            runs = [PlannedRun(**run | {"tables": tuple(run["tables"])}) for run in data["runs"]]
            return cls(data["scale"], data["source"], runs, data.get("selection", {}))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"{path} is not a run manifest written by countlib book: {err}"
            ) from err

    def subset(
        self, *, tables: str | None = None, families: Sequence[str] | None = None
    ) -> RunView:
        """A view of the runs of one table (by its ``runs_of`` key) or of some model families."""
        runs = [
            run
            for run in self.runs
            if (tables is None or tables in run.tables)
            and (families is None or run.family in families or run.model in families)
        ]
        return RunView(self, runs)


@dataclass
class RunView:
    """Some of a manifest's runs, matched against what a runs directory holds."""

    manifest: RunManifest
    planned: list[PlannedRun]

    def load(self, runs_dir: str | Path) -> RunTable:
        runs_dir = Path(runs_dir)
        wanted = {run.run: run for run in self.planned}
        ours = {run.run for run in self.manifest.runs}
        present = find_runs(runs_dir) if runs_dir.exists() else []
        table = load_runs([r.path for r in present if r.path.name in wanted])
        if len(table):
            # same name, other config (the directory was overwritten by hand): not this run
            expected = table["run"].map(lambda name: wanted[name].config_hash)
            mismatched = table[table["config_hash"] != expected]
            table = table[table["config_hash"] == expected]
            tags = table["run"].map(lambda name: ",".join(wanted[name].tables))
            table = table.assign(tables=tags)
        else:
            mismatched = table
        foreign = sum(r.path.name not in ours for r in present) + len(mismatched)
        finished = table[table["status"] != "incomplete"] if len(table) else table
        return RunTable(self, runs_dir, finished, foreign)


@dataclass
class RunTable:
    """The finished runs of a view, and what is missing or ignored beside them."""

    view: RunView
    runs_dir: Path
    runs: pd.DataFrame
    #: Run directories in the runs directory that are not the manifest's (another profile's).
    ignored: int

    def of_table(self, key: str) -> pd.DataFrame:
        """The finished runs the manifest tags with table ``key`` (a table's ``runs_of``)."""
        if not len(self.runs):
            return self.runs
        return self.runs[self.runs["tables"].str.split(",").map(lambda tags: key in tags)]

    @property
    def missing(self) -> int:
        """Planned runs without results: not trained, failed, or still running."""
        return len(self.view.planned) - len(self.runs)

    def scale_line(self, what: str = "this page") -> str:
        """One Markdown paragraph: scale, source, how many runs the page shows, what it left out."""
        manifest = self.view.manifest
        steps = sorted({run.steps for run in self.view.planned if run.steps is not None})
        steps_text = f", {'/'.join(f'{s:,}' for s in steps)} steps" if steps else ""
        text = (
            f"**Scale: {manifest.scale}** ({manifest.source_label}"
            f"{manifest.selection_label}{steps_text})."
        )
        if not self.view.planned:
            return text + f" This book's selection has no runs for {what}."
        damaged = int((self.runs["status"] == DAMAGED).sum()) if len(self.runs) else 0
        text += (
            f" {what[0].upper() + what[1:]} shows "
            f"{len(self.runs) - damaged} finished run(s) of the {len(self.view.planned)} planned "
            f"for it (of {len(manifest.runs)} in this book)."
        )
        if damaged:
            text += (
                f" **{damaged} run(s) have damaged records**: their cells show no number "
                f"({RETRAIN_HINT})."
            )
        if self.missing:
            text += f" **{self.missing} planned run(s) have no results** (not trained or failed)."
        if self.ignored:
            text += (
                f" {self.ignored} other run(s) in `{self.runs_dir}` are not this book's (other "
                "profiles or specs) and are ignored."
            )
        return text
