"""Bad input is refused early and reported in one line (issue 11, items 9 and 10).

A configuration that cannot train as written is refused before a run directory exists, and
every error a user's input or the machine's state causes reaches the command line as one
``error: ...`` line with exit code 2 (1 where ``data check`` finds a bad file), never a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import random
import typing

import pytest
import torch

from countlib.batches import Collator
from countlib.cli import main
from countlib.config import ConfigFileError, EvalConfig, OptimConfig, RunConfig
from countlib.models import MODELS, get_family, model_config
from countlib.sweep import SweepRun, gpu_hours
from countlib.tasks import get_task
from countlib.train.records import RunDir
from countlib.validation import check_field_types

TINY_TRAIN = ["train", "--task", "mod10", "--model", "lstm", "--hidden", "8", "--steps", "2",
              "--eval-every", "2", "--device", "cpu", "--quiet"]  # fmt: skip


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``countlib ARGS``; a failure's stderr is one line."""
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    if code:
        assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    return code, captured.out, captured.err


def train_tiny(capsys: pytest.CaptureFixture[str], runs: os.PathLike) -> RunDir:
    assert run_cli(capsys, *TINY_TRAIN, "--runs-dir", runs)[0] == 0
    (path,) = (p for p in runs.iterdir() if p.is_dir())
    return RunDir(path)


# -- item 9: inputs that must be refused before a run directory exists -------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--warmup-steps", "-5"], "warmup_steps must be >= 0, got -5"),
        (["--lr", "inf"], "lr must be a finite number"),
        (["--lr", "nan"], "lr must be a finite number"),
        (["--lr", "0"], "lr must be positive"),
        (["--weight-decay", "-0.1"], "weight_decay must be >= 0"),
        (["--weight-decay", "inf"], "weight_decay must be a finite number"),
        (["--precision", "fp16"], "precision 'fp16' needs a CUDA device"),
        (["--set", "hidden=true"], "hidden must be an integer, got True"),
        (["--set", "layers=2.0"], "layers must be an integer, got 2.0"),
        (["--set", "layers=two"], "layers must be an integer, got 'two'"),
        (["--set", "dropout=.nan"], "dropout must be a finite number"),
        (["--set", "hidden=["], "--set hidden: '[' is not a YAML value"),
    ],
)
def test_a_refused_config_leaves_no_run_directory(flags, message, tmp_path, capsys):
    runs = tmp_path / "runs"
    code, _, err = run_cli(capsys, *TINY_TRAIN, "--runs-dir", runs, *flags)
    assert code == 2 and message in err
    assert not runs.exists()


def test_a_position_range_too_small_for_the_task_is_refused_before_training(tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["train", "--task", "mod10", "--model", "transformer", "--layers", "1", "--hidden",
            "8", "--heads", "2", "--pe", "ape", "--set", "max_positions=60", "--steps", "2",
            "--device", "cpu", "--quiet", "--runs-dir", runs]  # fmt: skip
    code, _, err = run_cli(capsys, *args)
    # mod10's OOD split reaches 100 real tokens: m = n + 1 = 101 position ids
    assert code == 2 and "at least 101" in err
    assert not runs.exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--pe", "spe", "--positions", "shift"], "pe='spe' needs float position values"),
        (["--pe", "ape", "--positions", "zooming"], "pe='ape' needs integer position ids"),
        (["--pe", "ape", "--positions", "none", "--set", "max_positions=60"], "at least 101"),
    ],
)
def test_positions_the_transformer_cannot_take_are_refused_before_training(
    flags, message, tmp_path, capsys
):
    runs = tmp_path / "runs"
    args = ["train", "--task", "mod10", "--model", "transformer", "--layers", "1", "--hidden",
            "8", "--heads", "2", "--steps", "2", "--device", "cpu", "--quiet", "--runs-dir",
            runs]  # fmt: skip
    code, _, err = run_cli(capsys, *args, *flags)
    assert code == 2 and message in err
    assert not runs.exists()


def test_the_collator_names_the_minimum_the_whole_task_needs():
    collator = Collator(get_task("mod10"), "shift", max_positions=60)
    with pytest.raises(ValueError, match="at least 101,"):
        collator.positions(60, random.Random(0))


#: Values a field of each type must refuse: a bool or a float is not an int, a bool or a
#: non-finite number is not a float, a number is neither a bool nor a string.
WRONG_VALUES = {
    int: [True, 2.0],
    float: [False, float("nan"), float("inf")],
    bool: [1, "yes"],
    str: [1],
}


def _fits(value: object, member: type) -> bool:
    """Whether ``value`` is right for one member of a field's union (the test's own oracle)."""
    if member is float:
        return type(value) in (int, float) and value == value and abs(value) != float("inf")
    return type(value) is member


def _option_values(cls: type) -> list[tuple[str, object]]:
    """(field, wrong value) for every int, float and bool field of a model config."""
    cases = []
    for name, hint in typing.get_type_hints(cls).items():
        members = set(typing.get_args(hint)) or {hint}
        for kind in members & set(WRONG_VALUES):
            wrong = [v for v in WRONG_VALUES[kind] if not any(_fits(v, m) for m in members)]
            cases += [(name, v) for v in wrong]
    return cases


MODEL_OPTION_CASES = [
    (family, name, value)
    for family, spec in MODELS.items()
    for name, value in _option_values(spec.config)
    if name != "vocab_size"
]


@pytest.mark.parametrize(("family", "option", "value"), MODEL_OPTION_CASES)
def test_every_family_refuses_a_value_of_the_wrong_type(family, option, value):
    with pytest.raises(ValueError, match=f"^{option} must be "):
        model_config(family, 10, {option: value})


def test_every_family_has_typed_options_to_check():
    assert {family for family, _, _ in MODEL_OPTION_CASES} == set(MODELS)
    assert ("lstm", "hidden", True) in MODEL_OPTION_CASES


@pytest.mark.parametrize("family", sorted(MODELS))
def test_every_family_default_config_passes_the_type_check(family):
    check_field_types(model_config(family, 10, {}))


@pytest.mark.parametrize(
    ("section", "options", "message"),
    [
        (OptimConfig, {"warmup_steps": -1}, "warmup_steps must be >= 0"),
        (OptimConfig, {"warmup_steps": 2.5}, "warmup_steps must be an integer"),
        (OptimConfig, {"steps": 10.0}, "steps must be an integer"),
        (OptimConfig, {"batch_size": True}, "batch_size must be an integer"),
        (OptimConfig, {"grad_clip": -1.0}, "grad_clip must be >= 0"),
        (OptimConfig, {"grad_clip": float("nan")}, "grad_clip must be a finite number"),
        (OptimConfig, {"weight_decay": float("-inf")}, "weight_decay must be a finite number"),
        (OptimConfig, {"l2wrap": float("inf")}, "l2wrap must be a finite number"),
        (OptimConfig, {"betas": [0.9, True]}, "betas must be a pair"),
        (OptimConfig, {"betas": [0.9, float("nan")]}, "betas must be a pair"),
        (EvalConfig, {"every": True}, "every must be an integer"),
        (EvalConfig, {"batch_size": 1.5}, "batch_size must be an integer"),
        (EvalConfig, {"shift_samples": 0}, "shift_samples must be >= 1"),
        (EvalConfig, {"seed": None}, "seed must be an integer"),
    ],
)
def test_optimiser_and_evaluation_values_are_checked(section, options, message):
    with pytest.raises(ValueError, match=message):
        section(**options)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": True}, "seed must be an integer"),
        ({"seed": 1.0}, "seed must be an integer"),
        ({"data_seed": "1"}, "data_seed must be an integer or null"),
        ({"optim": {"stepz": 3}}, r"unknown optim key\(s\) \['stepz'\]"),
        ({"eval": {"evry": 3}}, r"unknown eval key\(s\) \['evry'\]"),
    ],
)
def test_run_config_fields_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(task="mod10", model="lstm", **kwargs)


def test_an_aux_share_outside_the_unit_interval_is_refused_by_the_config():
    with pytest.raises(ValueError, match=r"sum to \[0, 1\)"):
        RunConfig(task="vanilla_succession", model="lstm", aux_share=1.5)


def test_yaml_integers_for_float_options_are_kept_and_hash_as_before():
    # YAML writes 0 for 0.0; the check accepts it and converts nothing, so no hash moves
    config = RunConfig(task="mod10", model="lstm", model_options={"dropout": 0, "hidden": 8})
    assert config.resolve().model_options["dropout"] == 0
    assert RunConfig(task="mod10", model="lstm", optim={"lr": 1}).resolve().optim.lr == 1


# -- item 10: one line on stderr instead of a traceback ----------------------------------------


def test_a_second_trainer_of_a_locked_run_gets_one_line(tmp_path, capsys):
    runs = tmp_path / "runs"
    config = RunConfig(
        task="mod10",
        model="lstm",
        model_options={"hidden": 8},
        optim={"steps": 2},
        eval={"every": 2},
    )
    with RunDir(runs / config.run_name()).lock():
        code, _, err = run_cli(capsys, *TINY_TRAIN, "--runs-dir", runs)
    assert code == 2 and "is being trained by" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line(tmp_path, capsys):
    args = [*TINY_TRAIN[:-3], "--device", "cuda", "--quiet", "--runs-dir", tmp_path / "runs"]
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "CUDA is not available" in err
    assert not (tmp_path / "runs").exists()


def test_a_runs_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.write_text("")
    code, _, err = run_cli(capsys, *TINY_TRAIN, "--runs-dir", runs)
    assert code == 2 and f"--runs-dir {runs} is not a directory" in err


def test_a_spec_with_a_yaml_syntax_error_names_file_and_line(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text("steps: 2\ngrid:\n  - {task: mod10, model: lstm\n  - {task: mod10}\n")
    code, _, err = run_cli(capsys, "sweep", "--spec", spec, "--dry-run")
    assert code == 2 and f"{spec}:4: not valid YAML" in err


def test_config_files_name_file_and_line(tmp_path):
    bad_json = tmp_path / "config.json"
    bad_json.write_text('{\n  "task": "mod10",\n  "model": \n')
    with pytest.raises(ConfigFileError, match=f"^{bad_json}:4: not valid JSON"):
        RunConfig.load(bad_json)
    bad_yaml = tmp_path / "config.yaml"
    bad_yaml.write_text("task: mod10\nmodel: [lstm\n")
    with pytest.raises(ConfigFileError, match=f"^{bad_yaml}:3: not valid YAML"):
        RunConfig.load(bad_yaml)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"task": "mod10", "model": "lstm", "seed": 1.5}))
    with pytest.raises(ConfigFileError, match=f"^{wrong}: seed must be an integer"):
        RunConfig.load(wrong)


def test_a_dry_run_estimates_a_spec_that_leaves_steps_to_the_family(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("grid:\n  - {task: mod10, model: lstm, hidden: 8}\n")
    code, out, _ = run_cli(capsys, "sweep", "--spec", spec, "--dry-run", "--runs-dir", tmp_path)
    assert code == 0 and f"steps={get_family('lstm').steps} " in out
    run = SweepRun(RunConfig(task="mod10", model="lstm", model_options={"hidden": 8}))
    assert gpu_hours([run]) > 0


def test_a_directory_given_as_a_data_file_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "data", "check", tmp_path, "--task", "mod10")
    assert code == 2 and f"{tmp_path}: Is a directory" in err


def test_an_empty_data_file_fails_the_check(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    code, _, err = run_cli(capsys, "data", "check", empty, "--task", "mod10")
    assert code == 1 and f"{empty}: no examples" in err


def test_deeply_nested_json_in_a_data_file_names_file_and_line(tmp_path, capsys):
    deep = tmp_path / "deep.txt"
    deep.write_text(json.dumps([["a"], ["1"]]) + "\n" + "[" * 4000 + "\n")  # within a line
    code, _, err = run_cli(capsys, "data", "check", deep, "--task", "mod10")
    assert code == 1 and f"{deep}:2: not valid JSON (nested too deeply)" in err


def test_a_data_file_that_is_not_text_names_the_file(tmp_path, capsys):
    binary = tmp_path / "data.bin"
    binary.write_bytes(b"\xff\xfe\x00garbage\n")
    code, _, err = run_cli(capsys, "data", "check", binary, "--task", "mod10")
    assert code == 1 and f"{binary}: not UTF-8 text" in err


def test_eval_on_an_empty_data_file_is_one_line(tmp_path, capsys):
    run = train_tiny(capsys, tmp_path / "runs")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, _, err = run_cli(capsys, "eval", run.path, "--data", empty, "--device", "cpu")
    assert code == 2 and f"{empty}: no examples" in err


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file opened with os.fdopen (the atomic writers' temp files) fails to write: the
    disk is full."""
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, handle: typing.IO[str]) -> None:
            self.handle = handle

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdopen", lambda *args, **kw: Full(real_fdopen(*args, **kw)))


def test_a_full_disk_names_the_file_being_written(tmp_path, capsys, full_disk):
    out = tmp_path / "val.txt"
    code, _, err = run_cli(capsys, "data", "export", "mod10", "--out", out)
    assert (code, err) == (2, f"error: {out}: No space left on device\n")
    assert list(tmp_path.iterdir()) == []  # the temp file went too


def test_a_full_disk_while_training_is_one_line(tmp_path, capsys, full_disk):
    code, _, err = run_cli(capsys, *TINY_TRAIN, "--runs-dir", tmp_path / "runs")
    assert code == 2 and err.endswith(": No space left on device\n")
    assert str(tmp_path / "runs") in err
