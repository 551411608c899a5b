"""The hf family (`countlib.models.hf`): Hugging Face transformers causal LMs built from a
config class name, tiny and with random weights, pass the registry-wide checks, take countlib's
position ids and attention mask as countlib means them, train through a sweep spec and land in
the book's tables, one row per architecture."""

from __future__ import annotations

from importlib.util import find_spec

import pytest
import torch
import yaml

from countlib import report
from countlib.config import RunConfig
from countlib.families import MODELS, family_pages, page_of
from countlib.models import build_model, get_family
from countlib.sweep import expand, load_spec, run_sweep
from tests import family_checks as checks
from tests.family_checks import one_thread  # noqa: F401 (autouse)
from tests.test_families import check_entry
from tests.test_user_model import restore_models  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(
    find_spec("transformers") is None,
    reason="the hf extra is not installed (pip install 'countlib[hf]')",
)

ARCHITECTURES = ["LlamaConfig", "GPT2Config", "MambaConfig"]


@pytest.fixture
def hf(restore_models):  # noqa: F811
    """The hf family, registered through its import path for this test only."""
    get_family("hf")
    return "hf"


def tiny(architecture: str) -> dict:
    return get_family("hf").tiny_options | {"hf_config": architecture}


def test_hf_enters_through_the_import_path_door(hf):
    family = MODELS["hf"]
    assert family.model.__name__ == "HFCausalLM" and family.model.__module__ == "countlib.models.hf"
    assert (family.lr, family.steps, family.gpu_precision) == (1e-3, 10_000, "bf16")
    check_entry("hf")
    shown = family_pages()[page_of("hf")]
    assert page_of("hf") == "train_hf" and "transformers causal LM" in shown.intro


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_passes_the_registry_wide_checks(architecture, hf):
    model = checks.tiny_model(hf, tiny(architecture))
    assert model(checks.random_ids()).shape == (3, 13, checks.V)
    checks.check_causal(model)
    checks.check_training_reduces_loss(model)
    checks.check_state_dict_round_trip(lambda: build_model(hf, checks.V, **tiny(architecture)))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_a_masked_key_is_read_by_no_other_position(architecture, hf):
    """countlib's mask is False at keys nobody may attend to (a ``<pad>`` helper within the
    sequence): which token stands there changes no other position's logits."""
    model = checks.tiny_model(hf, tiny(architecture))
    ids = checks.random_ids(2, 9)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[:, 4] = False
    other = ids.clone()
    other[:, 4] = (ids[:, 4] + 1) % checks.V
    with torch.no_grad():
        a = model(ids, attention_mask=mask)
        b = model(other, attention_mask=mask)
        unmasked = model(other)
    keep = [t for t in range(9) if t != 4]
    torch.testing.assert_close(a[:, keep], b[:, keep])
    assert not torch.allclose(unmasked[:, 5:], b[:, 5:]), "the mask reached the model"


def test_position_ids_reach_the_models_that_read_them(hf):
    ids = checks.random_ids(2, 9)
    positions = torch.arange(9).expand(2, 9)
    with torch.no_grad():
        # learned absolute positions (GPT-2): other ids, other logits
        gpt2 = checks.tiny_model(hf, tiny("GPT2Config"))
        assert not torch.allclose(
            gpt2(ids, position_ids=positions), gpt2(ids, position_ids=positions + 3)
        )
        # rotary positions (Llama): a shift of every id changes nothing but rounding
        llama = checks.tiny_model(hf, tiny("LlamaConfig"))
        torch.testing.assert_close(
            llama(ids, position_ids=positions), llama(ids, position_ids=positions + 3)
        )
        torch.testing.assert_close(llama(ids, position_ids=positions), llama(ids))


def test_options_reach_the_transformers_config_and_mistakes_are_named(hf):
    model = build_model(hf, 11, hf_config="GPT2Config", hidden=16, layers=3, heads=4,
                        options={"n_inner": 24})  # fmt: skip
    config = model.lm.config
    assert (config.n_embd, config.n_layer, config.n_head, config.n_inner) == (16, 3, 4, 24)
    assert build_model(hf, 11, **tiny("LlamaConfig")).lm.config.intermediate_size == 64
    with pytest.raises(ValueError, match="'LamaConfig' is no transformers causal-LM config; "
                       "did you mean LlamaConfig"):  # fmt: skip
        build_model(hf, 11, hf_config="LamaConfig")
    with pytest.raises(ValueError, match="takes integer position ids"):
        RunConfig(task="mod10", model=hf, position_scheme="scalar_shift")


def test_a_sweep_spec_trains_each_architecture_into_a_row_of_its_own(hf, tmp_path):
    entry = {"task": "mod10", "model": "hf", "hf_config": ARCHITECTURES, "hidden": 16,
             "layers": 1, "heads": 2, "steps": 3, "batch_size": 4, "eval_every": 3}  # fmt: skip
    spec = {"name": "hf", "eval_batch_size": 512, "grid": [entry]}
    path = tmp_path / "hf.yaml"
    path.write_text(yaml.safe_dump(spec))
    sweep = run_sweep(expand(load_spec(path)), tmp_path / "runs", device="cpu", log=lambda _: None)
    assert sweep.ok, sweep.format()
    page = report.family_runs(["hf"], tmp_path / "runs", grid=spec, train=False)
    table = report.summary_table(page.runs)
    assert sorted(table["hf_config"]) == sorted(ARCHITECTURES)
    assert table["best_ood"].between(0, 1).all()


def test_a_shifted_position_scheme_trains_gpt2_within_its_positions(hf, tmp_path):
    """Shifted ids (the paper's Transformers') stay within max_positions, the task's range."""
    from countlib.config import EvalConfig, OptimConfig
    from countlib.train import train

    config = RunConfig(task="shifted_start", model=hf, model_options=tiny("GPT2Config"),
                       position_scheme="shift", optim=OptimConfig(steps=2, batch_size=4),
                       eval=EvalConfig(every=2, batch_size=512))  # fmt: skip
    assert train(config, tmp_path, device="cpu", progress=False).status == "complete"
