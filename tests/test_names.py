"""One name per concept across the CLI, sweep specs and the family notebooks: a notebook
parameter that sets a run's setting has the spec key's name (``warmup_steps``, ``model``, ``pe``),
and the notebooks' old names (``warmup``, ``models``, ``pes``) still work, with a FutureWarning
naming the new one."""

import dataclasses
import re
import warnings

import pytest

from countlib import report
from countlib.families import PAGES, get_family, page_families
from countlib.notebooks import FAMILY_NOTEBOOK, RENAMED_PARAMETERS, family_notebook
from countlib.sweep import expand
from countlib.sweep.spec import EVAL_KEYS, OPTIM_KEYS, RUN_KEYS

SPEC_KEYS = {*RUN_KEYS, *OPTIM_KEYS, *EVAL_KEYS}


def options_of(family: str) -> set[str]:
    return {f.name for f in dataclasses.fields(get_family(family).config)} - {"vocab_size"}


def code_cells(name: str) -> list[str]:
    return [
        "".join(c["source"]) for c in family_notebook(name)["cells"] if c["cell_type"] == "code"
    ]


def parameter_names(name: str) -> list[str]:
    """The names the parameters cell of notebook ``name`` assigns."""
    return re.findall(r"^(\w+) = ", code_cells(name)[0], re.MULTILINE)


@pytest.mark.parametrize("page", sorted(PAGES))
def test_a_pages_grid_parameters_are_spec_keys_or_options_of_its_families(page):
    options = set().union(*(options_of(family) for family in page_families(page)))
    for name in PAGES[page].parameters:
        assert name in SPEC_KEYS or name in options, f"{page}: {name}"


def test_every_new_name_is_the_specs_and_no_notebook_uses_an_old_one_but_as_its_alias():
    assert {"warmup_steps", "model"} <= SPEC_KEYS and "pe" in options_of("transformer")
    assert set(RENAMED_PARAMETERS.values()) <= SPEC_KEYS | options_of("transformer")
    for name in [FAMILY_NOTEBOOK, *PAGES]:
        names = parameter_names(name)
        assert "warmup_steps" in names and "steps" in names, name
        for old, new in RENAMED_PARAMETERS.items():
            if old in names:  # an alias, read only where the new name is a parameter too
                assert new in names, (name, old)
                assert f'{new} = renamed("{old}", {old}, {new})' in code_cells(name)[1]
        # after the renaming cell, no old name but report.own_grid's keyword ``warmup=``
        source = "\n".join(code_cells(name)[2:])
        assert not re.search(r"\b(warmup|models|pes)\b(?!=)", source), name


def run_cells(name: str, given: dict) -> dict:
    """Run notebook ``name``'s parameters cell, then what papermill injects for ``given``, then
    its renaming cell; returns the namespace."""
    namespace: dict = {}
    parameters, renaming = code_cells(name)[:2]
    exec(parameters, namespace)
    namespace.update(given)
    exec(renaming, namespace)
    return namespace


def spec_of(name: str, namespace: dict) -> dict:
    """The sweep spec notebook ``name``'s own grid makes of ``namespace``'s parameters."""
    exec(code_cells(name)[3], namespace)  # the page's cell: its grid entry
    keys = ("steps", "eval_every", "seeds", "lr")
    return report.own_grid(namespace["entry"], warmup=namespace["warmup_steps"],
                           **{key: namespace[key] for key in keys})  # fmt: skip


def test_the_new_names_reach_the_runs_without_a_warning():
    given = {"pe": ["alibi"], "warmup_steps": 7, "steps": 20, "layers": 1, "hidden": 8}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        namespace = run_cells("train_transformer", given)
    runs = expand(spec_of("train_transformer", namespace))
    assert [run.config.model_options["pe"] for run in runs] == ["alibi"]
    assert runs[0].config.optim.warmup_steps == 7


@pytest.mark.parametrize(
    ("name", "old", "value", "new"),
    [
        ("train_transformer", "pes", ["alibi", "t5"], "pe"),
        ("train_transformer", "warmup", 7, "warmup_steps"),
        ("train_rnn", "models", ["gru"], "model"),
        (FAMILY_NOTEBOOK, "warmup", 7, "warmup_steps"),
    ],
)
def test_an_old_name_still_works_and_names_the_new_one(name, old, value, new):
    with pytest.warns(FutureWarning, match=f"'{old}' is now called '{new}'"):
        namespace = run_cells(name, {old: value, "steps": 400})
    assert namespace[new] == value
    if name == FAMILY_NOTEBOOK:
        return  # its grid comes from the page of its family parameter, in a later cell
    runs = expand(spec_of(name, namespace))
    if new == "warmup_steps":
        assert {run.config.optim.warmup_steps for run in runs} == {value}
    elif new == "model":
        assert [run.config.model for run in runs] == value
    else:
        assert [run.config.model_options[new] for run in runs] == value
