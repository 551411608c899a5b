import dataclasses
import json

import pytest

from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.models import UnknownModelError
from countlib.tasks import UnknownTaskError


def lstm(**kwargs):
    return RunConfig(task="shifted_start", model="lstm", **kwargs)


def test_unknown_task_lists_valid_names():
    with pytest.raises(UnknownTaskError, match="shifted_start"):
        RunConfig(task="shifted_strat", model="lstm")


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownModelError, match="lstm"):
        RunConfig(task="mod10", model="lstn")


def test_unknown_model_option_lists_valid_options():
    with pytest.raises(ValueError, match="hidden"):
        lstm(model_options={"hiden": 64})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"precision": "fp8"},
        {"position_scheme": "spiral"},
        {"optim": {"steps": 0}},
        {"optim": {"lr": -1.0}},
        {"eval": {"every": 0}},
        {"model_options": {"dropout": 1.5}},
    ],
)
def test_invalid_values_are_rejected(kwargs):
    with pytest.raises(ValueError):
        lstm(**kwargs)


def test_aux_share_only_for_mixtures():
    with pytest.raises(ValueError, match="auxiliary"):
        lstm(aux_share=0.3)
    resolved = RunConfig(task="vanilla_succession", model="lstm").resolve()
    assert resolved.aux_share == pytest.approx(0.5)


def test_resolve_fills_family_defaults_and_aliases():
    resolved = RunConfig(task="counting_samesymbol_shiftedstart3", model="lstm").resolve()
    assert resolved.task == "shifted_start"
    assert resolved.optim.lr == 5e-3 and resolved.optim.warmup_steps == 0
    assert resolved.optim.steps == 10_000
    transformer = RunConfig(task="mod10", model="transformer", model_options={"pe": "rope"})
    resolved_t = transformer.resolve()
    assert (resolved_t.optim.lr, resolved_t.optim.steps) == (1e-4, 312_500)
    assert resolved_t.position_scheme == "shift"
    assert resolved_t.model_options["max_positions"] == 128
    assert resolved.model_options == {"layers": 1, "hidden": 128, "dropout": 0.0, "cell": "lstm"}
    assert resolved.data_seed == resolved.seed
    assert resolved.position_scheme == "none"


def test_hash_is_stable_idempotent_and_sensitive():
    a = lstm(seed=1)
    assert a.config_hash() == lstm(seed=1).config_hash()
    # An alias and the explicit default describe the same experiment.
    same = RunConfig(
        task="counting_samesymbol_shiftedstart3",
        model="lstm",
        model_options={"hidden": 128},
        optim=OptimConfig(lr=5e-3),
        seed=1,
    )
    assert same.config_hash() == a.config_hash()
    assert a.resolve().config_hash() == a.config_hash()
    assert lstm(seed=2).config_hash() != a.config_hash()
    assert lstm(seed=1, data_seed=7).config_hash() != a.config_hash()


def test_json_and_yaml_round_trip(tmp_path):
    config = lstm(model_options={"layers": 2}, optim=OptimConfig(steps=77), seed=5).resolve()
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config.to_dict()))
    assert RunConfig.load(path) == config
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text(
        "task: mod10\nmodel: gru\noptim:\n  steps: 12\nmodel_options:\n  hidden: 8\n"
    )
    loaded = RunConfig.load(yaml_path)
    assert loaded.optim.steps == 12 and loaded.model_options == {"hidden": 8}


def test_unknown_top_level_key_is_rejected():
    with pytest.raises(ValueError, match="valid"):
        RunConfig.from_dict({"task": "mod10", "model": "lstm", "stpes": 3})


def test_an_option_added_later_renames_no_run():
    """Mamba's ``negative_eigenvalues`` came after Mamba runs were recorded: at its neutral
    value the hash is the one those runs have (recorded before the option existed)."""
    recorded = RunConfig(
        task="mod10",
        model="mamba",
        model_options={"layers": 1, "hidden": 32},
        optim=OptimConfig(steps=100, lr=1e-3, warmup_steps=0),
        eval=EvalConfig(every=100),
        seed=1234,
    )
    assert recorded.config_hash() == "335b71663b20"
    flipped = dataclasses.replace(
        recorded, model_options={**recorded.model_options, "negative_eigenvalues": True}
    )
    assert flipped.config_hash() != recorded.config_hash()
