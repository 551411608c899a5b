"""Building blocks of the notebooks: choose the runs, train or reuse them, tabulate, plot.

The notebooks stay thin so that every page of the book is produced the same way. Reading and
plotting runs needs no torch; only planning and training runs (`notebook_runs`, `run_all`)
load it, on first use.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from countlib.book import manifest_for
from countlib.formatting import CONFIG_COLUMNS, SUCCESS_STYLE, config_labels, generalised, percent
from countlib.manifest import RunManifest, RunTable
from countlib.paths import runs_dir_or_default
from countlib.profiles import get_profile
from countlib.results import CHECKPOINT_RULES, aggregate, load_tally
from countlib.tasks import get_task

if TYPE_CHECKING:
    from countlib.sweep import SweepRun


def notebook_runs(
    families: Sequence[str],
    *,
    profile: str | None = None,
    grid: Mapping[str, Any] | None = None,
    default: Mapping[str, Any] | None = None,
) -> list[SweepRun]:
    """The runs of ``families`` in a profile, in an explicit sweep spec, or else in ``default``
    (the notebook's own small grid). Giving both a profile and a grid is an error."""
    from countlib.sweep import expand  # torch: only when runs are planned

    if profile and grid:
        raise ValueError("give either a profile or a grid, not both")
    if profile:
        planned = get_profile(profile)
    else:
        spec = grid or default
        if spec is None:
            raise ValueError("no profile, grid or default spec to take the runs from")
        planned = expand(spec)
    return [run for run in planned if run.family in families or run.config.model in families]


def run_all(
    runs: Sequence[SweepRun],
    runs_dir: str | Path,
    *,
    device: str = "cpu",
    executor: str = "sequential",
    workers: int | None = None,
) -> None:
    """Train what is missing (complete runs are reused).

    A failed run is an error here, unlike in a sweep: a page must not quietly show fewer runs
    than it planned.
    """
    from countlib.sweep import run_sweep  # torch: only when runs train

    outcome = run_sweep(
        runs, runs_dir, executor=executor, device=device, workers=workers, log=print
    )
    if not outcome.ok:
        raise RuntimeError(outcome.format())


def own_grid(
    entry: Mapping[str, Any],
    *,
    steps: int,
    eval_every: int,
    seeds: Sequence[int],
    lr: float | None = None,
    warmup: int | None = None,
) -> dict[str, Any]:
    """A family notebook's own small sweep spec: one grid entry and its budget."""
    return {
        "name": "notebook grid",
        "steps": steps,
        "eval_every": min(eval_every, steps),
        "seeds": list(seeds),
        "lr": lr,
        "warmup_steps": warmup,
        "grid": [dict(entry)],
    }


def family_runs(
    families: Sequence[str],
    runs_dir: str | Path | None,
    *,
    manifest: str | Path | None = None,
    profile: str | None = None,
    grid: Mapping[str, Any] | None = None,
    default: Mapping[str, Any] | None = None,
    train: bool = True,
    device: str = "cpu",
    executor: str = "sequential",
    workers: int | None = None,
) -> RunTable:
    """The runs of a family page. In the book (``manifest`` given) exactly the manifest's runs
    of these families, nothing trains; on its own, the runs of a profile, a grid or the
    notebook's ``default`` grid, trained first unless ``train`` is False. ``runs_dir`` None:
    countlib's default (`countlib.paths.default_runs_dir`)."""
    runs_dir = runs_dir_or_default(runs_dir)
    if manifest is not None:
        return page_runs(runs_dir, manifest=manifest, families=families)
    planned = notebook_runs(families, profile=profile, grid=grid, default=default)
    if train:
        run_all(planned, runs_dir, device=device, executor=executor, workers=workers)
    scale = "this notebook's grid" if not (profile or grid) else profile or "a given grid"
    spec = None if profile else grid or default
    own = manifest_for(planned, scale=scale, profile=profile, grid=spec)
    return own.subset(families=families).load(runs_dir)


def page_runs(
    runs_dir: str | Path | None,
    *,
    manifest: str | Path | None = None,
    profile: str | None = None,
    table: str | None = None,
    families: Sequence[str] | None = None,
) -> RunTable:
    """The runs a book page reads: the manifest's (as `countlib book` wrote it) or, on its own,
    a profile's, optionally only those of one table (by its ``runs_of`` key) or of some model
    families. ``runs_dir`` None: countlib's default (`countlib.paths.default_runs_dir`)."""
    if manifest is not None:
        chosen = RunManifest.load(manifest)
    elif profile is not None:
        chosen = manifest_for(get_profile(profile), scale=profile, profile=profile)
    else:
        raise ValueError("a page needs the manifest of a book or a profile to read runs of")
    return chosen.subset(tables=table, families=families).load(runs_dir_or_default(runs_dir))


def show_runs(table: RunTable, *, rule: str = "best_ood", headline: str | None = None) -> None:
    """A family page's results: the summary table (best and median of the seeds, in percent),
    then OOD accuracy by position and, where OOD sequences vary in length, by length."""
    from IPython.display import HTML, Markdown, display

    runs = table.runs
    if not len(runs):
        display(Markdown("No finished runs."))
        return
    summary = summary_table(runs, rule=rule)
    display(HTML(readable_summary(summary)))
    if headline:
        rows = summary.to_dict(orient="records")
        save_headline(table.runs_dir, headline, {"rule": rule, "rows": rows})
    display(Markdown(f"### OOD accuracy by position\n\n{BY_POSITION_TEXT}"))
    show_figure(plot_accuracy_by(runs, "position", rule=rule))
    if varies_in_length(runs):
        display(Markdown(f"### OOD accuracy by sequence length\n\n{BY_LENGTH_TEXT}"))
        show_figure(plot_accuracy_by(runs, "length", rule=rule))


def readable_summary(summary: pd.DataFrame) -> str:
    """`summary_table` as the paper shows it: one row per task and configuration (a readable
    label), best and median of the seeds as "IND / OOD" in percent, shaded where best OOD
    reaches the success threshold."""
    labels = config_labels(summary)
    head = "<tr><th>task</th><th>configuration</th><th>seeds</th><th>best IND / OOD</th>"
    head += "<th>median IND / OOD</th></tr>"
    body = []
    for index, row in summary.iterrows():
        ok = row["success"]
        style = f' class="cl-success" {SUCCESS_STYLE}' if ok else ""
        cells = [
            html.escape(str(row["task"])),
            html.escape(labels[index]),
            str(int(row["seeds"])),
            f"{percent(row['best_ind'])} / {percent(row['best_ood'])}",
            f"{percent(row['median_ind'])} / {percent(row['median_ood'])}",
        ]
        tds = "".join(f"<td>{c}</td>" for c in cells[:3])
        tds += f"<td{style}>{cells[3]}</td><td>{cells[4]}</td>"
        body.append(f"<tr>{tds}</tr>")
    return f'<table class="countlib-summary">{head}{"".join(body)}</table>'


def show_figure(fig) -> None:
    """Show a figure where it is made (not at the end of the cell), then release it."""
    if fig is None:
        return
    import matplotlib.pyplot as plt
    from IPython.display import display

    display(fig)
    plt.close(fig)


BY_POSITION_TEXT = (
    "One panel per task, a line per configuration (mean over seeds; each seed faint behind it), "
    "at the checkpoint of the "
    "table above. Positions right of the dashed line are longer than any training sequence."
)
BY_LENGTH_TEXT = (
    "Token accuracy over whole OOD sequences of each length: up to which length does the model "
    "count? Lengths right of the dashed line are longer than any training sequence."
)


def summary_table(
    runs: pd.DataFrame, by: Sequence[str] = ("task", *CONFIG_COLUMNS), rule: str = "best_ood"
) -> pd.DataFrame:
    """Best-of-k and median-of-k IND/OOD with a success flag (`generalised`), one row per
    configuration (always per model) of the run table ``runs`` (`countlib.results.load_runs`);
    grouping columns no run sets are left out."""
    by = list(by) if "model" in by else ["model", *by]
    by = [col for col in by if col in runs and runs[col].notna().any()]
    table = aggregate(runs, by=by, rule=rule)
    pairs = zip(table["best_ind"], table["best_ood"], strict=True)
    table["success"] = [generalised(ind, ood) for ind, ood in pairs]
    return table


#: What a per-key accuracy curve is plotted against, by tally kind.
TALLY_AXES = {"position": "position (real tokens)", "length": "sequence length (real tokens)"}


def tally_at(
    runs: pd.DataFrame, kind: str = "position", rule: str = "best_ood", split: str = "ood"
) -> pd.DataFrame:
    """Accuracy by position or length (`countlib.results.load_tally`) of every run at the
    checkpoint that ``rule`` picks (the one the tables report), with the run's configuration
    columns joined."""
    if rule not in CHECKPOINT_RULES:
        raise ValueError(f"unknown checkpoint rule {rule!r}; choose from {CHECKPOINT_RULES}")
    done = runs[runs["status"] != "incomplete"] if len(runs) else runs
    if not len(done):
        return pd.DataFrame()
    table = load_tally(list(done["path"]), kind, step="all")
    if not len(table):
        return table
    table = table[table["split"] == split]
    info = done.set_index("run")
    table = table[table["step"] == table["run"].map(info[f"{rule}_step"])]
    return table.join(info.drop(columns=[c for c in info if c in table]), on="run")


def plot_accuracy_by(
    runs: pd.DataFrame,
    kind: str = "position",
    *,
    facet: str = "task",
    hue: str = "config",
    rule: str = "best_ood",
    title: str = "",
    col_wrap: int = 2,
):
    """OOD accuracy per position (or per sequence length), one panel per ``facet`` value and a
    line per configuration (mean over seeds, each seed faint behind it where there are several),
    at the checkpoint ``rule`` picks; a dashed line
    marks each panel's longest training sequence. Returns the figure, or None when no run has
    such data."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if kind not in TALLY_AXES:
        raise ValueError(f"no accuracy curve by {kind!r}; choose from {', '.join(TALLY_AXES)}")
    table = tally_at(runs.assign(config=config_labels(runs)), kind, rule)
    if not len(table):
        return None
    panels = list(dict.fromkeys(table[facet]))
    cols = min(col_wrap, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        data = table[table[facet] == panel]
        sns.lineplot(data=data, x=kind, y="accuracy", hue=hue, ax=ax, errorbar=None, marker=".")
        if data.groupby(hue)["seed"].nunique().max() > 1:  # each seed faint behind the mean
            sns.lineplot(
                data=data, x=kind, y="accuracy", hue=hue, units="seed", estimator=None, ax=ax,
                alpha=0.25, linewidth=0.8, legend=False,
            )  # fmt: skip
        edges = {get_task(task).max_train_length for task in data["task"].unique()}
        for edge in edges:
            ax.axvline(edge - 0.5, color="k", linestyle="--", linewidth=1)
        ax.set(title=str(panel), xlabel=TALLY_AXES[kind], ylabel="OOD accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7, loc="lower left")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def varies_in_length(runs: pd.DataFrame, split: str = "ood") -> bool:
    """Whether the tasks of ``runs`` have OOD sequences of more than one length: only then does
    accuracy by length answer "up to which length does it count"."""
    tasks = {get_task(task) for task in runs["task"].unique()} if len(runs) else set()
    return any(split in t.splits and len(set(t.splits[split].lengths)) > 1 for t in tasks)


def save_headline(runs_dir: str | Path, name: str, row: dict[str, Any]) -> Path:
    """Store a notebook's headline numbers where the book and later sweeps can read them."""
    path = Path(runs_dir) / "headlines" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=2, default=float))
    return path
