"""Bring your own model: a user's model class in a package of its own (written here to a
temporary folder on sys.path), named by import path or registered with
`countlib.models.register`, passes the registry-wide checks (build, causality, training steps,
state dict, stacking), trains through ``countlib train`` and a sweep spec (stacked and in pool
workers), lands in the book's tables and gets a family page; a model that breaks the contract is
refused with a message that names what is missing."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
import yaml

from countlib import families, report
from countlib.book import book_pages, toc
from countlib.cli import main
from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.families import MODELS, family_pages, page_of
from countlib.models import build_model, get_family, register
from countlib.notebooks import FAMILY_NOTEBOOK
from countlib.results import load_runs
from countlib.sweep import expand, load_spec, run_sweep
from countlib.train import train
from countlib.train.reload import load_run_model
from tests import family_checks as checks
from tests.conftest import REPO
from tests.family_checks import one_thread  # noqa: F401 (autouse)
from tests.test_families import check_entry, check_stacks
from tests.test_trainer import FIGURE_1_TASKS

USER_MODULE = '''
from dataclasses import dataclass

from torch import nn


@dataclass
class CounterConfig:
    vocab_size: int
    hidden: int = 8
    layers: int = 1


class CounterModel(nn.Module):
    """A GRU language model of the user's own."""

    config_class = CounterConfig
    family_defaults = {"lr": 1e-2, "tiny_options": {"hidden": 8}, "stackable": True}

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.hidden)
        self.rnn = nn.GRU(config.hidden, config.hidden, config.layers, batch_first=True)
        self.head = nn.Linear(config.hidden, config.vocab_size)

    def forward(self, input_ids, *, position_ids=None, attention_mask=None):
        return self.head(self.rnn(self.embedding(input_ids))[0])

    def token_embedding(self):
        return self.embedding

    def state_size(self):
        return self.config.layers * self.config.hidden


class NoConfigClass(CounterModel):
    config_class = None


class NoKeywords(CounterModel):
    def forward(self, input_ids):
        return super().forward(input_ids)


class NoTokenEmbedding(nn.Module):
    config_class = CounterConfig

    def forward(self, input_ids, *, position_ids=None, attention_mask=None):
        return input_ids


class NotAModule:
    config_class = CounterConfig


class PlainConfig:
    vocab_size = 3


class PlainConfigModel(CounterModel):
    config_class = PlainConfig
'''

PATH = "usermodels.counter:CounterModel"
TINY = {"hidden": 8}


@pytest.fixture
def restore_models():
    """The catalogue as it was after the test: a family registered by it is gone."""
    before = dict(MODELS)
    yield
    MODELS.clear()
    MODELS.update(before)


@pytest.fixture
def user_package(tmp_path, monkeypatch, restore_models):
    """The package ``usermodels`` (module ``counter``) in a temporary folder on sys.path, and in
    PYTHONPATH for processes started by the test."""
    package = tmp_path / "site" / "usermodels"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "counter.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.setenv("PYTHONPATH", str(package.parent))
    for name in [name for name in sys.modules if name.startswith("usermodels")]:
        monkeypatch.delitem(sys.modules, name)
    return package


def tiny_run(model: str, task: str = "mod10", steps: int = 4, **kwargs) -> RunConfig:
    return RunConfig(
        task=task,
        model=model,
        model_options=TINY,
        optim=OptimConfig(steps=steps, batch_size=4),
        eval=EvalConfig(every=2, batch_size=512),
        **kwargs,
    )


def test_a_model_by_import_path_passes_the_registry_wide_checks(user_package):
    family = get_family(PATH)
    assert PATH in MODELS and family.lr == 1e-2 and family.stackable  # its family_defaults
    assert family.steps == 10_000 and family.gpu_precision == "fp32"  # countlib's user defaults
    check_entry(PATH)
    check_stacks(PATH)
    model = checks.tiny_model(PATH, TINY)
    checks.check_causal(model)
    checks.check_training_reduces_loss(model)
    checks.check_state_dict_round_trip(lambda: build_model(PATH, checks.V, **TINY))


@pytest.mark.parametrize("task", FIGURE_1_TASKS)
def test_a_model_by_import_path_trains_on_every_paper_task(task, user_package, tmp_path):
    result = train(tiny_run(PATH, task, steps=2), tmp_path, device="cpu", progress=False)
    assert result.status == "complete" and 0 <= result.summary["final"]["ood"] <= 1
    assert result.summary["state_size"] == 8  # an optional hook, recorded where present


def test_a_registered_family_trains_and_its_checkpoint_reloads(user_package, tmp_path):
    from usermodels.counter import CounterConfig, CounterModel

    register("counter", CounterConfig, CounterModel, {"lr": 5e-3})
    assert get_family("counter").lr == 5e-3 and not get_family("counter").stackable
    result = train(tiny_run("counter"), tmp_path, device="cpu", progress=False)
    assert result.status == "complete"
    config, model = load_run_model(result.run_dir.path)
    assert config.model == "counter" and config.optim.lr == 5e-3
    with torch.no_grad():  # the checkpoint's weights, not a fresh model's
        assert any(p.abs().sum() > 0 for p in model.parameters())
        fresh = build_model("counter", 10, **TINY)
        assert not all(
            torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters(), strict=True)
        )


def test_countlib_train_takes_a_model_by_import_path(user_package, tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = ["train", "--task", "mod10", "--model", PATH, "--hidden", "8", "--steps", "2"]
    assert main([*argv, "--eval-every", "2", "--runs-dir", str(runs), "--quiet"]) == 0
    (run_dir,) = runs.iterdir()
    # the import path names the directory, without a colon
    assert run_dir.name.startswith("mod10-usermodels.counter.CounterModel-L1-H8-")


def test_a_sweep_spec_trains_it_stacked_and_its_runs_land_in_a_table(user_package, tmp_path):
    entry = {"task": "mod10", "model": PATH, "hidden": 8, "steps": 4, "batch_size": 4}
    spec = {"name": "mine", "eval_every": 2, "grid": [entry | {"seeds": [1, 2]}]}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(spec))
    runs = expand(load_spec(path))
    sweep = run_sweep(runs, tmp_path / "runs", device="cpu", stack=2, log=lambda _: None)
    assert sweep.ok, sweep.format()
    for run in runs:
        (segment,) = json.loads((tmp_path / "runs" / run.name / "environment.json").read_text())[
            "segments"
        ]
        assert segment["stacked_runs"] == 2, "trained as one stacked model"
    page = report.family_runs([PATH], tmp_path / "runs", grid=spec, train=False)
    table = report.summary_table(page.runs)
    (row,) = table.itertuples()
    assert row.model == PATH and row.seeds == 2 and 0 <= row.best_ood <= 1


def test_pool_workers_find_a_model_by_import_path(user_package, tmp_path):
    sweep = run_sweep([tiny_run(PATH, steps=2)], tmp_path / "runs", executor="pool", workers=1,
                      device="cpu", log=lambda _: None)  # fmt: skip
    assert sweep.ok, sweep.format()


def test_pool_workers_know_a_family_registered_in_the_sweeps_process(user_package, tmp_path):
    from usermodels.counter import CounterConfig, CounterModel

    register("counter", CounterConfig, CounterModel, {"lr": 5e-3})
    sweep = run_sweep([tiny_run("counter", steps=2)], tmp_path / "runs", executor="pool",
                      workers=1, device="cpu", log=lambda _: None)  # fmt: skip
    assert sweep.ok, sweep.format()
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "config.json").read_text())["optim"]["lr"] == 5e-3


def test_a_family_a_worker_cannot_import_fails_its_runs_saying_why(
    user_package, tmp_path, monkeypatch
):
    from usermodels.counter import CounterConfig, CounterModel

    register("gone", CounterConfig, CounterModel)
    # as a class defined in a notebook would be: registered here, no import path for a worker
    offered = ("usermodels.counter:CounterConfig", "usermodels.counter:NotThere", {})
    monkeypatch.setitem(families._REGISTERED, "gone", offered)
    sweep = run_sweep([tiny_run("gone", steps=2)], tmp_path / "runs", executor="pool",
                      workers=1, device="cpu", log=lambda _: None)  # fmt: skip
    (outcome,) = sweep.outcomes
    assert outcome.status == "failed" and "NotThere" in outcome.error
    assert "registered in the sweep's process" in outcome.error and "sequential" in outcome.error


def test_a_registered_family_gets_a_page_from_the_family_notebook(user_package):
    get_family(PATH)
    page = page_of(PATH)
    assert page == "train_usermodels_counter_CounterModel"
    shown = family_pages()[page]
    assert (shown.title, shown.intro) == (PATH, "A GRU language model of the user's own.")
    assert shown.grid_entry("mod10", PATH) == {"task": "mod10", "model": PATH}
    (book_page,) = [p for p in book_pages() if p.target == page]
    assert book_page.notebook == FAMILY_NOTEBOOK and book_page.parameters["family"] == PATH
    assert f"generated/{page}" in str(toc())


@pytest.mark.parametrize(
    "name, message",
    [
        ("usermodels.nothere:CounterModel", "cannot import module 'usermodels.nothere'"),
        ("usermodels.counter:Missing", "has no 'Missing'.*its classes: CounterConfig"),
        ("usermodels.counter:NoConfigClass", "has no config_class"),
        ("usermodels.counter:NoKeywords", "forward takes no position_ids or attention_mask"),
        ("usermodels.counter:NoTokenEmbedding", "has no token_embedding"),
        ("usermodels.counter:NotAModule", "is not a torch.nn.Module subclass"),
        ("usermodels.counter:PlainConfigModel", "PlainConfig.* is not a dataclass"),
        ("usermodels.counter", "unknown model"),
    ],
)
def test_a_model_that_breaks_the_contract_is_refused_naming_what_is_missing(
    name, message, user_package
):
    with pytest.raises((ValueError, KeyError), match=message):
        get_family(name)
    assert name not in MODELS


def test_registration_errors_name_the_problem(user_package):
    from usermodels.counter import CounterConfig, CounterModel

    with pytest.raises(ValueError, match="'lstm' is taken"):
        register("lstm", CounterConfig, CounterModel)
    with pytest.raises(ValueError, match="no default.*learning_rate; valid: lr, weight_decay"):
        register("mine", CounterConfig, CounterModel, {"learning_rate": 1e-3})
    with pytest.raises(ValueError, match="gpu_precision 'fp8'; choose from bf16, fp16, fp32"):
        register("mine", CounterConfig, CounterModel, {"gpu_precision": "fp8"})
    with pytest.raises(ValueError, match="letters, digits"):
        register("my model", CounterConfig, CounterModel)
    assert "mine" not in MODELS and "my model" not in MODELS


def test_the_cli_refuses_a_bad_import_path_in_one_line(user_package, tmp_path, capsys):
    argv = ["train", "--task", "mod10", "--model", "usermodels.counter:Missing"]
    assert main([*argv, "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "module 'usermodels.counter' has no 'Missing'" in err


def test_the_family_notebook_trains_and_shows_a_model_by_import_path(user_package, tmp_path):
    """Its page as the book executes it (`FAMILY_NOTEBOOK` with ``family``), on its own grid."""
    import papermill  # here: `pytest -m gpu` collects this module where papermill is not

    out = tmp_path / "page.ipynb"
    parameters = {"family": PATH, "task": "mod10", "options": TINY, "steps": 4, "eval_every": 2,
                  "runs_dir": str(tmp_path / "runs")}  # fmt: skip
    papermill.execute_notebook(str(REPO / "notebooks" / f"{FAMILY_NOTEBOOK}.ipynb"), str(out),
                               parameters=parameters, kernel_name="python3",
                               progress_bar=False)  # fmt: skip
    runs = load_runs(tmp_path / "runs")
    assert list(runs["model"]) == [PATH] and list(runs["steps"]) == [4]
    shown = out.read_text()
    assert "A GRU language model of the user's own." in shown and "this notebook's grid" in shown


def test_the_hf_family_without_transformers_is_refused_naming_the_extra(
    restore_models, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    argv = ["train", "--task", "mod10", "--model", "hf", "--runs-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'countlib[hf]'" in err
    assert not any(tmp_path.iterdir())
