"""The `countlib` command line."""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from countlib import data
from countlib.analysis import WHAT
from countlib.batches import POSITION_SCHEMES
from countlib.config import PRECISIONS, EvalConfig, OptimConfig, RunConfig
from countlib.curves import PlottingUnavailableError, save_learning_curves
from countlib.export import FORMATS, configurations, evaluations, load_selected, write
from countlib.families import MODELS
from countlib.models.backends import BackendUnavailableError
from countlib.paths import RUNS_DIR_VARIABLE, default_runs_dir
from countlib.results import ANALYSED_CHECKPOINT, CHECKPOINT_RULES, verify_runs
from countlib.sweep.spec import MAX_GRID_RUNS, grid_size
from countlib.tasks import DataError, Task, UnknownTaskError, get_task, list_tasks
from countlib.train.checkpoint import CheckpointError
from countlib.train.records import RETRAIN_HINT, RunDir, RunLockedError, evaluation_step
from countlib.train.tensorboard_log import TensorBoardUnavailableError
from countlib.validation import SEED_LIMIT

if TYPE_CHECKING:
    from countlib.sweep import SweepRun


def _span(lengths: tuple[int, int]) -> str:
    low, high = lengths
    return str(low) if low == high else f"{low}-{high}"


def _split_cell(task: Task, name: str) -> str:
    info = task.splits.get(name)
    if info is None:
        return "-"
    kind = "deterministic" if info.deterministic else "random"
    return f"{info.lines} lines, len {_span(info.lengths)} ({kind})"


def cmd_models(args: argparse.Namespace) -> int:
    """Every family with its options (name=default) and its optimiser defaults."""
    import dataclasses

    for name, family in MODELS.items():
        options = [
            f"{f.name}={f.default!r}" if f.default is not dataclasses.MISSING else f.name
            for f in dataclasses.fields(family.config)
            if f.name != "vocab_size"
        ]
        print(
            f"{name}: lr {family.lr}, warmup_steps {family.warmup_steps}, "
            f"steps {family.steps}, weight_decay {family.weight_decay}"
        )
        print(f"  options: {', '.join(options)}")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    tasks = list_tasks()
    if args.markdown:
        print("| task | original names | vocab | train len | val | ood / test |")
        print("|---|---|---|---|---|---|")
        for task in tasks:
            aliases = ", ".join(f"`{a}`" for a in task.aliases) or "-"
            last = "ood" if "ood" in task.splits else "test"
            print(
                f"| `{task.name}` | {aliases} | {len(task.vocab)} | {_span(task.train_lengths)} "
                f"| {_split_cell(task, 'val')} | {_split_cell(task, last)} |"
            )
        return 0
    rows = [("task", "vocab", "train", "val", "ood", "aliases")]
    for task in tasks:
        val = task.splits.get("val") or task.splits.get("test")
        ood = task.splits.get("ood")
        rows.append(
            (
                task.name,
                str(len(task.vocab)),
                _span(task.train_lengths),
                _span(val.lengths) if val else "-",
                _span(ood.lengths) if ood else "-",
                ", ".join(task.aliases),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[5])
    return 0


def _examples(task: Task, split: str, n: int | None, seed: int):
    if split == "train":
        rng = random.Random(seed)
        return (task.sample(rng) for _ in range(n if n is not None else 1000))
    examples = task.split(split, seed=seed)
    return examples if n is None else examples[:n]


def cmd_export(args: argparse.Namespace) -> int:
    task = get_task(args.task)
    count = data.write_file(args.out, _examples(task, args.split, args.n, args.seed))
    # on standard error when the lines go to standard output, so that they stay data alone
    report = sys.stderr if args.out == data.STDOUT else sys.stdout
    print(f"wrote {count} lines of {task.name}/{args.split} to {args.out}", file=report)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    task = get_task(args.task)
    try:
        count = data.check_file(args.file, task)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"ok: {count} lines of {args.file} follow task {task.name}")
    return 0


def _model_options(args: argparse.Namespace) -> dict[str, object]:
    options: dict[str, object] = {}
    for key in ("layers", "hidden", "heads", "pe"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        options[key] = _yaml_value(f"--set {key}", value)
    return options


def _yaml_value(flag: str, text: str) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError(f"{flag}: {text!r} is not a YAML value") from None


def cmd_train(args: argparse.Namespace) -> int:
    from countlib.train import train
    from countlib.train.checkpoint import set_aside_broken

    config = RunConfig(
        task=args.task,
        model=args.model,
        model_options=_model_options(args),
        optim=OptimConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            warmup_steps=args.warmup_steps,
        ),
        eval=EvalConfig(
            every=args.eval_every,
            shift_samples=args.shift_samples,
            keep_weights=args.keep_weights,
            tensorboard=args.tensorboard,
            plateau_evals=args.plateau_evals,
            plateau_tolerance=args.plateau_tolerance,
        ),
        seed=args.seed,
        aux_share=args.aux_share,
        position_scheme=args.positions,
        precision=args.precision,
    )
    if args.retrain_broken:
        run_dir = RunDir(Path(args.runs_dir) / config.run_name())
        aside = set_aside_broken(run_dir, config.config_hash())
        if aside is not None:
            print(f"broken run moved aside to {aside[0].name} to train afresh: {aside[1]}")
    result = train(
        config,
        args.runs_dir,
        device=args.device,
        progress=not args.quiet,
        allow_thread_change=args.allow_thread_change,
        allow_backend_change=args.allow_backend_change,
        batches_ahead=args.batches_ahead,
    )
    summary = result.summary
    verb = "already complete" if result.skipped else result.status
    print(f"{verb}: {result.run_dir.path}")
    for rule in ("final", "best_val", "best_ood"):
        point = summary.get(rule) or {}
        print(f"  {rule:<8} step {point.get('step')}: {_ind_ood(point)}")
    print(f"  wall time {summary['wall_time_s']} s, {summary['parameters']} parameters")
    return 0 if result.status == "complete" else 1


#: Names countlib used before it settled on one per concept: old name -> the name to use.
RENAMED = {"--warmup": "--warmup-steps", "last": "final"}


class _Renamed(argparse.Action):
    """An option under its old name (`RENAMED`): it still works, and says what to call it."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        _note_renamed(str(option_string))
        setattr(namespace, self.dest, values)


def _note_renamed(old: str) -> None:
    print(f"note: {old} is now called {RENAMED[old]}; the old name will go", file=sys.stderr)


def _checkpoint_rule(value: str) -> str:
    """``eval --checkpoint``: a checkpoint rule (`CHECKPOINT_RULES`); ``last`` is ``final``."""
    if value in RENAMED and RENAMED[value] in CHECKPOINT_RULES:
        _note_renamed(value)
        return RENAMED[value]
    if value not in CHECKPOINT_RULES:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(CHECKPOINT_RULES)}, got {value!r}"
        )
    return value


def _add_runs_dir(parser: argparse.ArgumentParser) -> None:
    default = default_runs_dir()
    parser.add_argument(
        "--runs-dir",
        default=str(default),
        help=f"where runs are kept (default here: {default}; ${RUNS_DIR_VARIABLE}, else the "
        "runs/ of the countlib checkout around the working directory, else ./runs)",
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("countlib")
    except PackageNotFoundError:  # imported from a checkout that was never installed
        return "unknown (not installed)"


def _whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in [``low``, ``high``) (None: no upper bound)."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
        if number < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {number}")
        if high is not None and number >= high:
            raise argparse.ArgumentTypeError(f"must be below {high:,}, got {number}")
        return number

    return parse


#: A count of at least 1 (``--workers``, ``--stack``): 0 or -1 must not mean a default.
_positive_count = _whole_number(1)
#: A seed: an unsigned 32-bit integer, as configs take (`countlib.validation.SEED_LIMIT`).
_seed = _whole_number(0, SEED_LIMIT)


def _analysed_checkpoint(value: str) -> str:
    """``analyse --checkpoint``: one of the checkpoint rules or ``step-<N>``, a kept evaluation."""
    if value in CHECKPOINT_RULES or evaluation_step(value) is not None:
        return value
    raise argparse.ArgumentTypeError(
        f"expected one of {', '.join(CHECKPOINT_RULES)} or step-N (N a whole number), got {value!r}"
    )


def _ind_ood(point: dict[str, object]) -> str:
    def fmt(value: object) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    return f"IND {fmt(point.get('ind'))}  OOD {fmt(point.get('ood'))}"


def cmd_eval(args: argparse.Namespace) -> int:
    from countlib.train.reload import evaluate_run

    report = evaluate_run(
        args.run_dir,
        checkpoint=args.checkpoint,
        data=args.data,
        splits=args.split,
        device=args.device,
        shift_samples=args.shift_samples,
        precision=args.precision,
    )
    for name, result in report.results.items():
        line = f"{name}: acc {result.acc:.4f}"
        if result.extrapolation_acc is not None:
            line += f"  extrapolation (OOD) {result.extrapolation_acc:.4f}"
        line += f"  legacy unseen-length {result.legacy_unseen_len_acc:.4f}"
        print(line)
    print(f"per-position table: {report.table_path}")
    return 0


def cmd_analyse(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    from countlib.analysis.tools import analyse

    result = analyse(args.run_dir, args.what, args.checkpoint, per_split=args.per_split)
    written = result.save(args.out)
    result.close()
    print(result.text)
    for path in written:
        print(f"  wrote {path}")
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    print(f"wrote {save_learning_curves(args.run_dir, args.out)}")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    if not Path(args.runs_dir).is_dir():
        raise ValueError(f"{args.runs_dir}: no such runs directory")
    names = None
    if args.profile or args.spec:  # torch: a sweep's runs are named by their resolved configs
        from countlib.profiles import get_profile
        from countlib.sweep import expand, load_spec

        sweep = expand(load_spec(args.spec)) if args.spec else get_profile(args.profile)
        names = {run.name for run in sweep}
    with _one_line_warnings():  # a damaged run: "warning: run ... <file> ...", one line
        runs = load_selected(args.runs_dir, names)
        if args.evaluations:
            table = evaluations(runs, args.runs_dir)
        else:
            table = configurations(runs, args.rule)
    write(table, args.format, sys.stdout)
    return 0


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Warnings raised inside print as one line on stderr, ``warning: <message>``, as errors
    do, not with the file and source line of where they were raised."""

    def show(message: Warning | str, *_: object, **__: object) -> None:
        print(f"warning: {_one_line(Exception(message))}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def cmd_runs(args: argparse.Namespace) -> int:
    """``countlib runs verify|stamp``: check every finished run's records (and stamp the older
    ones with checksums); exit 1 where one is damaged."""
    if not Path(args.runs_dir).is_dir():
        raise ValueError(f"{args.runs_dir}: no such runs directory")
    found = verify_runs(args.runs_dir, stamp=args.action == "stamp")
    for line in found["damaged"]:
        print(f"damaged: {line}")
    print(
        f"{sum(map(len, found.values()))} finished runs: {len(found['verified'])} verified, "
        f"{len(found['stamped'])} stamped now, {len(found['unstamped'])} without checksums, "
        f"{len(found['damaged'])} damaged"
    )
    if found["unstamped"]:
        print(f"`countlib runs stamp {args.runs_dir}` gives those without checksums theirs")
    if found["damaged"]:
        print(f"the damaged ones: {RETRAIN_HINT}")
    return 1 if found["damaged"] else 0


def cmd_book(args: argparse.Namespace) -> int:
    from countlib.book import make_book
    from countlib.profiles import get_profile
    from countlib.sweep import expand, load_spec
    from countlib.sweep import select as select_runs

    grid = load_spec(args.spec) if args.spec else None
    max_runs = None if args.allow_large_grid else MAX_GRID_RUNS
    runs = expand(grid, max_runs) if grid else get_profile(args.profile)
    runs = select_runs(
        runs, tasks=args.task or (), families=args.family or (), tables=args.table or ()
    )
    scale = args.scale or (f"spec {Path(args.spec).name}" if args.spec else args.profile)
    with _interruptible(runs, args.runs_dir):
        report = make_book(
            runs,
            profile=None if grid else args.profile,
            grid=grid,
            scale=scale,
            selection={"task": args.task, "family": args.family, "table": args.table},
            runs_dir=args.runs_dir,
            device=args.device,
            executor=args.executor,
            workers=args.workers,
            parameters={key: _yaml_value(f"-p {key}", value) for key, value in args.param or []},
            only=args.notebook or (),
            build=not args.no_build,
            out=args.out,
            verbose=args.verbose,
        )
    return 0 if report.ok else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    from countlib.profiles import get_profile
    from countlib.sweep import (
        ExecutorUnavailableError,
        expand,
        format_plan,
        load_spec,
        load_step_times,
        run_sweep,
    )
    from countlib.sweep import select as select_runs

    spec = load_spec(args.spec) if args.spec else None
    max_runs = None if args.allow_large_grid else MAX_GRID_RUNS
    if spec is not None and args.dry_run and max_runs is not None:
        size = grid_size(spec)  # counted, not expanded: a dry run must not take minutes
        if size > max_runs:
            print(
                f"{args.spec}: a grid of {size:,} runs (before duplicates merge), over the "
                f"{max_runs:,} countlib sweep trains without --allow-large-grid"
            )
            return 0
    runs = expand(spec, max_runs) if spec is not None else get_profile(args.profile)
    runs = select_runs(
        runs, tasks=args.task or (), families=args.family or (), tables=args.table or ()
    )
    if args.step_times and not args.dry_run:
        raise ValueError("--step-times is for the --dry-run estimate; add --dry-run")
    if args.why:
        if not args.dry_run or args.spec:
            raise ValueError("--why explains a profile's runs: use it with --profile and --dry-run")
        from countlib.profiles import explain, format_why, why_summary

        explained = explain(args.profile, [run.name for run in runs])
        print(format_why(explained))
        print(why_summary(explained))
        return 0
    if args.dry_run:
        step_times = load_step_times(args.step_times) if args.step_times else None
        print(format_plan(runs, args.runs_dir, step_times))
        return 0
    try:
        with _interruptible(runs, args.runs_dir):
            report = run_sweep(
                runs,
                args.runs_dir,
                executor=args.executor,
                device=args.device,
                workers=args.workers,
                address=args.address,
                log=lambda line: print(line, flush=True),
                retrain_broken=args.retrain_broken,
                workers_per_gpu=args.workers_per_gpu,
                stack=args.stack,
            )
    except ExecutorUnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.format())
    return 0 if report.ok else 1


class Interrupted(Exception):
    """Ctrl-C during a sweep; the message says what finished and how to go on."""


@contextlib.contextmanager
def _interruptible(runs: Sequence[SweepRun], runs_dir: str | Path) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        finished = sum(RunDir(Path(runs_dir) / run.name).is_complete() for run in runs)
        raise Interrupted(
            f"interrupted: {finished} of {len(runs)} runs finished; the same command trains the "
            "rest (a run cut short resumes from its last checkpoint)"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="countlib", description=__doc__)
    parser.add_argument("--version", action="version", version=f"countlib {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list every model family with its options and defaults")
    models.set_defaults(func=cmd_models)

    tasks = sub.add_parser("tasks", help="list every task with aliases, vocabulary and lengths")
    tasks.add_argument("--markdown", action="store_true", help="print a Markdown table")
    tasks.set_defaults(func=cmd_tasks)

    data_cmd = sub.add_parser("data", help="export or check data files")
    data_sub = data_cmd.add_subparsers(dest="data_command", required=True)
    export = data_sub.add_parser("export", help="write a split in the original JSON-lines format")
    export.add_argument("task")
    export.add_argument(
        "--split",
        default="val",
        help="train, val, ood or an auxiliary test split (e.g. addbigram_test)",
    )
    export.add_argument(
        "--n",
        type=_whole_number(1, data.MAX_EXPORT_LINES + 1),
        default=None,
        help=f"number of lines, 1 to {data.MAX_EXPORT_LINES:,} (train: default 1000)",
    )
    export.add_argument("--seed", type=_seed, default=0)
    export.add_argument("--out", required=True, help="the file to write; - for standard output")
    export.set_defaults(func=cmd_export)
    check = data_sub.add_parser("check", help="validate every line of a file against a task")
    check.add_argument("file")
    check.add_argument("--task", required=True)
    check.set_defaults(func=cmd_check)

    tr = sub.add_parser("train", help="train one run (resumes or skips an existing one)")
    tr.add_argument("--task", required=True)
    tr.add_argument(
        "--model",
        required=True,
        help="model family, e.g. lstm, transformer, hf, or a model class by import path "
        "(package.module:Class)",
    )
    tr.add_argument("--layers", type=int)
    tr.add_argument("--hidden", type=int, help="hidden size (d_model for attention models)")
    tr.add_argument("--heads", type=int, help="attention heads (transformer)")
    tr.add_argument("--pe", help="positional scheme (transformer): nope, sine, ape, rope, spe, ...")
    tr.add_argument("--set", action="append", metavar="KEY=VALUE", help="other model option")
    tr.add_argument("--steps", type=int, help="optimizer steps; default: the model family's")
    tr.add_argument("--batch-size", type=int, default=OptimConfig.batch_size)
    tr.add_argument("--lr", type=float, help="default: the model family's")
    tr.add_argument("--weight-decay", type=float)
    tr.add_argument("--warmup-steps", type=int, help="linear warmup steps")
    tr.add_argument(
        "--warmup", type=int, dest="warmup_steps", action=_Renamed, help=argparse.SUPPRESS
    )
    tr.add_argument("--eval-every", type=int, default=EvalConfig.every)
    tr.add_argument("--shift-samples", type=int, default=1)
    tr.add_argument(
        "--keep-weights",
        action="store_true",
        help="keep each evaluation's weights (RUN_DIR/evaluations/), for --what development",
    )
    tr.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard event files (RUN_DIR/tensorboard/; needs the tensorboard "
        "extra); the run and its numbers are the same either way",
    )
    tr.add_argument(
        "--plateau-evals",
        type=int,
        metavar="K",
        help="stop when neither IND nor OOD has risen by more than --plateau-tolerance at any "
        "of the last K evaluations (--steps is then a cap); default: train to --steps",
    )
    tr.add_argument(
        "--plateau-tolerance",
        type=float,
        help="accuracy in [0, 1) a rise must exceed to count (default 0.01, one point)",
    )
    tr.add_argument("--seed", type=_seed, default=1234)
    tr.add_argument("--aux-share", type=float, help="auxiliary share for mixture tasks")
    tr.add_argument("--positions", choices=POSITION_SCHEMES, help="position-id scheme")
    tr.add_argument("--precision", choices=PRECISIONS, default="auto")
    _add_runs_dir(tr)
    tr.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.add_argument(
        "--allow-thread-change",
        action="store_true",
        help="resume a CPU run at another torch thread count than it was trained at (its "
        "numbers then differ from an uninterrupted run's); refused by default",
    )
    tr.add_argument(
        "--allow-backend-change",
        action="store_true",
        help="resume a run on other kernels than it trained on so far (e.g. countlib's where "
        "fla's ran: its numbers then mix the two); refused by default",
    )
    tr.add_argument(
        "--retrain-broken",
        action="store_true",
        help="if the run cannot go on (a checkpoint that cannot resume it, a broken record of "
        "a complete run), move its directory aside (<name>.broken-<time>) and train it afresh",
    )
    tr.add_argument(
        "--batches-ahead",
        type=int,
        help="training batches drawn ahead on a background thread (default: 8 on CUDA, none on "
        "CPU); the run's numbers are the same either way",
    )
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="evaluate a run's checkpoint on its splits or a data file")
    ev.add_argument("run_dir")
    ev.add_argument("--data", help="a file in the original JSON-lines format")
    ev.add_argument("--split", action="append", help="split name(s); default: all of the task's")
    ev.add_argument(
        "--checkpoint",
        type=_checkpoint_rule,
        default="final",
        help=f"{', '.join(CHECKPOINT_RULES)} (default final, the weights at the end)",
    )
    ev.add_argument("--shift-samples", type=int, default=1)
    ev.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    ev.add_argument(
        "--precision",
        choices=("recorded", *PRECISIONS[1:]),
        default="recorded",
        help="autocast while scoring; default: the precision the run trained at, so that the "
        "numbers are those it recorded",
    )
    ev.set_defaults(func=cmd_eval)

    an = sub.add_parser(
        "analyse", help="look inside a run: PCA, attention, probes, patching, development"
    )
    an.add_argument("run_dir")
    an.add_argument("--what", required=True, choices=WHAT, help="the analysis")
    an.add_argument(
        "--checkpoint",
        type=_analysed_checkpoint,
        default=ANALYSED_CHECKPOINT,
        help=f"{', '.join(CHECKPOINT_RULES)} or step-N (an evaluation kept with --keep-weights)",
    )
    an.add_argument("--per-split", type=int, default=64, help="sequences of each split (val, ood)")
    an.add_argument("--out", help="directory for the tables, numbers and figures (default: "
                    "RUN_DIR/analysis)")  # fmt: skip
    an.set_defaults(func=cmd_analyse)

    curves = sub.add_parser(
        "curves", help="learning curves of runs (loss, IND and OOD against step) as a PNG"
    )
    curves.add_argument(
        "run_dir", nargs="+", help="run directories, or directories of runs (drawn overlaid)"
    )
    curves.add_argument(
        "--out",
        metavar="FILE.png",
        help="default: RUN_DIR.curves.png beside the run (several: curves-N-runs.png beside "
        "the first)",
    )
    curves.set_defaults(func=cmd_curves)

    res = sub.add_parser(
        "results",
        help="the runs' numbers to take away: one row per configuration (IND/OOD in percent, as "
        "the book's cells), or with --evaluations every recorded evaluation",
    )
    res.add_argument(
        "runs_dir", nargs="?", default=default_runs_dir(), metavar="RUNS_DIR",
        help=f"default: ${RUNS_DIR_VARIABLE} or the repository's runs/",
    )  # fmt: skip
    res_source = res.add_mutually_exclusive_group()
    res_source.add_argument("--profile", help="only this profile's runs (countlib.profiles)")
    res_source.add_argument("--spec", help="only the runs of this sweep spec (YAML)")
    res.add_argument("--format", choices=tuple(FORMATS), default="csv")
    res.add_argument(
        "--rule",
        choices=CHECKPOINT_RULES,
        default=CHECKPOINT_RULES[0],
        help="the checkpoint whose numbers are reported (default: best_ood, as the book)",
    )
    res.add_argument(
        "--evaluations",
        action="store_true",
        help="every evaluation instead: run, task, model, options, step, split, metric, value "
        "(as recorded: accuracies are fractions 0-1)",
    )
    res.set_defaults(func=cmd_results)

    runs_cmd = sub.add_parser(
        "runs", help="check finished runs against their checksums, or stamp older runs with them"
    )
    runs_cmd.add_argument(
        "action", choices=("verify", "stamp"),
        help="verify: report every damaged record; stamp: also give finished runs older than "
        "checksums (that pass the other checks) their checksums.json",
    )  # fmt: skip
    runs_cmd.add_argument(
        "runs_dir", nargs="?", default=default_runs_dir(), metavar="RUNS_DIR",
        help=f"default: ${RUNS_DIR_VARIABLE} or the repository's runs/",
    )  # fmt: skip
    runs_cmd.set_defaults(func=cmd_runs)

    book = sub.add_parser(
        "book", help="run a profile, execute the notebooks with papermill, build the book"
    )
    source = book.add_mutually_exclusive_group()
    source.add_argument(
        "--profile",
        default="smoke",
        help="smoke (default), laptop, overnight, paper-lite, paper (countlib.profiles)",
    )
    source.add_argument("--spec", help="a sweep spec in YAML instead of a profile")
    book.add_argument("--task", action="append", help="only these tasks (repeatable)")
    book.add_argument("--family", action="append", help="only these model families (repeatable)")
    book.add_argument("--table", action="append", help="only these paper tables (repeatable)")
    book.add_argument("--scale", help="label on every page (default: the profile or spec name)")
    _add_runs_dir(book)
    book.add_argument(
        "--out",
        metavar="DIR",
        help="build the book in DIR (its sources are copied there); default: the countlib "
        "checkout around the working directory",
    )
    book.add_argument("--executor", choices=("sequential", "pool", "ray"), default="pool")
    book.add_argument(
        "--workers",
        type=_positive_count,
        help="parallel runs (default: GPUs, or CPU cores) and pages (default: CPU cores)",
    )
    book.add_argument(
        "--allow-large-grid",
        action="store_true",
        help=f"expand a spec of more than {MAX_GRID_RUNS:,} runs (refused by default)",
    )
    book.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    book.add_argument("--notebook", action="append", help="execute only these pages")
    book.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="notebook parameter for every page (YAML value), e.g. -p rule best_val",
    )
    book.add_argument("--no-build", action="store_true", help="only execute the notebooks")
    book.add_argument(
        "--verbose", action="store_true", help="show the book build's output (Sphinx's progress)"
    )
    book.set_defaults(func=cmd_book)

    sw = sub.add_parser("sweep", help="train a grid of runs (a profile or a spec file)")
    which = sw.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--profile", help="smoke, laptop, overnight, paper or paper-lite (countlib.profiles)"
    )
    which.add_argument("--spec", help="a sweep spec in YAML (see countlib.sweep)")
    sw.add_argument("--task", action="append", help="only these tasks (repeatable)")
    sw.add_argument("--family", action="append", help="only these model families (repeatable)")
    sw.add_argument("--table", action="append", help="only these paper tables (repeatable)")
    _add_runs_dir(sw)
    sw.add_argument("--executor", choices=("sequential", "pool", "ray"), default="sequential")
    sw.add_argument("--address", help="Ray cluster address (default: start a local instance)")
    sw.add_argument(
        "--workers", type=_positive_count, help="parallel runs (default: GPUs, or CPU cores)"
    )
    sw.add_argument("--device", default="auto", help="cpu, cuda or auto")
    sw.add_argument(
        "--workers-per-gpu",
        type=_positive_count,
        default=1,
        metavar="K",
        help="pool executor on GPUs: K workers share each visible GPU (worker i on GPU i // K), "
        "for families that stacking does not batch (default 1)",
    )
    sw.add_argument(
        "--stack",
        type=_positive_count,
        default=1,
        metavar="K",
        help="train up to K fresh runs of one shape (seeds) as one batched model per worker; "
        "pays on a GPU, not on CPU (benchmarks/train_throughput.py); default 1, none",
    )
    sw.add_argument("--dry-run", action="store_true", help="list the runs and GPU-hours only")
    sw.add_argument(
        "--why",
        action="store_true",
        help="with --dry-run and --profile: for each run, the claims it serves (or the table it "
        "fills as a structural check) and the selection result its settings come from",
    )
    sw.add_argument(
        "--step-times",
        metavar="FILE.json",
        help="with --dry-run: estimate from the fast path's measured step times, the JSON of "
        "benchmarks/train_throughput.py (default: the constant V100 model)",
    )
    sw.add_argument(
        "--retrain-broken",
        action="store_true",
        help="move runs that cannot go on aside (<name>.broken-<time>) and retrain them: "
        "complete runs with a broken record, unfinished ones whose checkpoint cannot resume",
    )
    sw.add_argument(
        "--allow-large-grid",
        action="store_true",
        help=f"expand a spec of more than {MAX_GRID_RUNS:,} runs (refused by default)",
    )
    sw.set_defaults(func=cmd_sweep)
    return parser


#: What a user's input or this machine's state causes, not a bug: reported in one line, exit 2.
#: OSError covers a missing or unreadable path, a directory given for a file and a full disk.
USER_ERRORS = (
    UnknownTaskError,
    KeyError,
    ValueError,
    OSError,
    CheckpointError,
    BackendUnavailableError,
    RunLockedError,
    TensorBoardUnavailableError,
    PlottingUnavailableError,
)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check_runs_dir(getattr(args, "runs_dir", None))
        status = args.func(args)
        sys.stdout.flush()  # a reader that went away shows here, not at the exit's flush
        return status
    except Interrupted as err:
        print(f"\n{err}", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports a command Ctrl-C stopped
    except BrokenPipeError:
        # the reader went away (`countlib tasks | head`): stop quietly, as Unix tools do; stdout
        # goes to devnull so that the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool a closed pipe stopped
    except USER_ERRORS as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2


def _check_runs_dir(path: str | None) -> None:
    """Refuse a ``--runs-dir`` that names a file now, not from inside the first run."""
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise ValueError(f"--runs-dir {path} is not a directory")


def _one_line(err: BaseException) -> str:
    """``err``'s message on one line; an OSError from the system as "path: reason"."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


if __name__ == "__main__":
    sys.exit(main())
