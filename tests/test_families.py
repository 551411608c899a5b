"""The family catalogue (`countlib.families`): every entry is complete, and a family added
through it alone, in a module of its own, is built, trained by a sweep, stacked where it says
so, and given a book page and notebook, without another edit."""

from __future__ import annotations

import textwrap

import pytest
import torch

from countlib import report
from countlib.book import book_pages, toc
from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.families import MODELS, PAGES, Family, FamilyPage, PageParameter, page_families
from countlib.models import build_model, get_family, model_config
from countlib.models.positions import PE_SCHEMES
from countlib.notebooks import FAMILY_NOTEBOOK, family_notebook, stale_notebooks
from countlib.sweep import run_sweep
from countlib.train.placement import AUTOCAST_DTYPES
from countlib.train.stacked import STACKABLE, stack_models
from tests.conftest import REPO

V = 11


def check_entry(name: str) -> None:
    """Every fact of ``name``'s entry is there and usable; a failure names the family."""
    family = get_family(name)
    assert isinstance(family.config, type) and isinstance(family.model, type), name
    assert family.tiny_options, f"{name}: no tiny_options for the tests to build it with"
    model_config(name, V, family.tiny_options)  # the tiny options are the family's options
    assert family.gpu_precision in AUTOCAST_DTYPES, f"{name}: gpu_precision"
    assert family.layer_step_s > 0, f"{name}: layer_step_s"
    torch.manual_seed(0)
    model = build_model(name, V, **family.tiny_options)
    ids = torch.randint(0, V, (2, 7))
    assert model(ids).shape == (2, 7, V), name
    assert model.token_embedding().weight.shape[0] == V, f"{name}: token_embedding()"


def check_stacks(name: str) -> None:
    """K models of a stackable family, stacked, compute each model (outputs and gradients)."""
    models = []
    for seed in range(2):
        torch.manual_seed(seed)
        models.append(build_model(name, V, **get_family(name).tiny_options))
    ids = torch.randint(0, V, (2, 3, 6))
    stacked = stack_models(models)(ids.flatten(0, 1)).view(2, 3, 6, -1)
    for k, model in enumerate(models):
        torch.testing.assert_close(stacked[k], model(ids[k]))


def check_sweep_trains(name: str, runs_dir) -> None:
    config = RunConfig(
        task="mod10",
        model=name,
        model_options=get_family(name).tiny_options,
        optim=OptimConfig(steps=4, batch_size=4),
        eval=EvalConfig(every=2, batch_size=256),
    )
    report = run_sweep([config], runs_dir, device="cpu")
    assert report.ok, report.format()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_entry_is_complete(name):
    check_entry(name)
    family = get_family(name)
    # a catalogue entry has a page of the book's own (a registered family may have its own)
    assert family.page in PAGES, f"{name}: page {family.page!r} is not in countlib.families.PAGES"
    assert (name in STACKABLE) == family.stackable


@pytest.mark.parametrize("name", sorted(STACKABLE))
def test_every_stackable_family_stacks(name):
    check_stacks(name)


def test_every_page_shows_a_family_and_its_notebook_is_the_generated_one():
    assert all(page_families(page) for page in PAGES)
    assert stale_notebooks() == [], "python -m countlib.notebooks rewrites them"
    family_pages = [p.target for p in book_pages() if p.notebook == FAMILY_NOTEBOOK]
    assert family_pages == list(PAGES)


# -- a family added through the catalogue alone ---------------------------------------------------

TOY_MODULE = '''
from dataclasses import dataclass

from torch import nn

from countlib.models.positions import PositionScheme


@dataclass
class ToyConfig:
    vocab_size: int
    hidden: int = 8


class ToyModel(nn.Module):
    """A GRU by another name: any module with the model interface will do."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.hidden)
        self.cell = nn.GRU(config.hidden, config.hidden, batch_first=True)
        self.head = nn.Linear(config.hidden, config.vocab_size)

    def forward(self, input_ids, *, position_ids=None, attention_mask=None):
        return self.head(self.cell(self.embedding(input_ids))[0])

    def token_embedding(self):
        return self.embedding


class ToyScheme(PositionScheme):
    """A learned scalar per position, added to the Transformer's input."""

    combines, attention, reads_positions = True, False, True
    float_positions, table, causal_only = False, True, False

    def build(self, model):
        model.toy_bias = nn.Embedding(self.config.max_positions, 1)

    def embed(self, model, h, position_ids):
        return h + model.toy_bias(position_ids)
'''


@pytest.fixture
def toy_family(tmp_path, monkeypatch):
    """A family in a module outside countlib, registered with one catalogue entry (and a page
    of its own)."""
    package = tmp_path / "toy_models"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "toy.py").write_text(textwrap.dedent(TOY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = Family(
        "toy_models.toy",  # a dotted path: a module outside countlib.models
        "ToyConfig",
        "ToyModel",
        lr=1e-2,
        weight_decay=0.0,
        warmup_steps=0,
        betas=(0.9, 0.999),
        l2wrap=0.0,
        gpu_precision="bf16",
        tiny_options={"hidden": 8},
        page="train_toy",
    )
    monkeypatch.setitem(MODELS, "toy", entry)
    page = FamilyPage("Toy", "A family added by a test.", {"hidden": PageParameter("hidden", 8)},
                      steps=10, model="toy")  # fmt: skip
    monkeypatch.setitem(PAGES, "train_toy", page)
    from toy_models.toy import ToyScheme

    monkeypatch.setitem(PE_SCHEMES, "toy", ToyScheme)  # and a positional scheme
    return "toy"


def test_a_family_added_to_the_catalogue_alone_is_tested_trained_and_shown(toy_family, tmp_path):
    check_entry(toy_family)
    check_sweep_trains(toy_family, tmp_path / "runs")
    assert "generated/train_toy" in str(toc())
    assert "train_toy" in [page.target for page in book_pages()]
    source = "".join("".join(cell["source"]) for cell in family_notebook("train_toy")["cells"])
    assert "# Toy\n" in source and 'FAMILIES = ["toy"]' in source and '"model": "toy"' in source
    # the notebook is the one a page needs: written, it is what the check compares against
    assert "train_toy" in stale_notebooks(REPO / "notebooks")


def test_a_family_page_trains_and_shows_the_toy_family_and_the_toy_scheme(toy_family, tmp_path):
    """What the pages' notebooks run (`countlib.report.family_runs`): the toy family on its own
    page, and the Transformer with the toy scheme on the Transformer's."""
    grid = {"steps": 4, "eval_every": 2, "seeds": [1], "lr": None, "warmup": 0}
    cells = {
        "toy": {"task": "mod10", "model": "toy", "hidden": 8},
        "transformer": {"task": "mod10", "model": "transformer", "pe": "toy"}
        | get_family("transformer").tiny_options,
    }
    for family, entry in cells.items():
        default = report.own_grid(entry, **grid)
        page = report.family_runs([family], tmp_path / "runs", default=default, device="cpu")
        (run,) = page.runs.itertuples()
        assert run.model == family and run.status == "complete"
        summary = report.summary_table(page.runs)
        assert len(summary) == 1 and summary["best_ood"].between(0, 1).all()
    assert "toy" in set(report.summary_table(page.runs)["pe"])


def test_a_forgotten_fact_fails_naming_the_family(toy_family, monkeypatch):
    from dataclasses import replace

    monkeypatch.setitem(MODELS, "toy", replace(MODELS["toy"], tiny_options={}))
    with pytest.raises(AssertionError, match="toy: no tiny_options"):
        check_entry("toy")
