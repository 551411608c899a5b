"""The catalogue of model families: one entry per family holds every fact countlib keeps about
it (optimiser and precision defaults, the sizes its tests train, whether it stacks, its GPU step
estimate, its book page), and where its classes are.

It imports nothing heavy, so reporting modules read it without torch; `countlib.models` loads
the classes. Adding a family: its model file under ``countlib/models/`` (a config dataclass and
a module class, `countlib.models.contract` says what a model takes and returns) and one entry in
`MODELS`. Every registry-wide test, sweep, estimate, benchmark and the book loop over `MODELS`.

A user's own family joins without an edit here: `register` adds it in a running process, and a
model class named by import path (``package.module:Class``, where a model name is asked for)
registers itself on first use, in every process that reads the name (sweep workers too).
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Family:
    """Everything countlib knows of one model family, in one place: tests, sweeps, estimates,
    benchmarks and the book loop over `MODELS` and read these fields."""

    #: Where the family's classes are: ``countlib.models.<module>`` (or a full dotted path),
    #: its config dataclass and its model class by name; imported on first use, so that this
    #: catalogue loads without torch. A registered user family (`register`) may hold the classes
    #: themselves, or import paths ``package.module:Class``.
    module: str
    config_class: str | type
    model_class: str | type
    #: Optimiser defaults of the family (protocol.md and the documented CPU defaults).
    lr: float
    weight_decay: float
    warmup_steps: int
    #: Fidelity defaults, each with its source at the registration below: AdamW's betas, the
    #: L2Wrap logit regulariser's strength (0 = off), and the mixed precision of a CUDA run
    #: whose config says "auto" ("bf16", "fp16" or "fp32"; CPU runs are always fp32).
    betas: tuple[float, float]
    l2wrap: float
    gpu_precision: str
    #: Training budget in optimizer steps: the paper's for Transformers; a CPU-scale budget
    #: for recurrent families, whose paper budgets were not published.
    steps: int = 20_000
    #: Position-id scheme the batches need by default.
    position_scheme: str = "none"
    #: The model chooses its kernels when built, so it is built for the run's device (its
    #: class takes ``device``); the other families choose at each forward, by the input's.
    built_for_device: bool = False
    #: Options of a model small enough for a test to train it in a second on one CPU core:
    #: every registry-wide test, benchmark self-check and GPU smoke builds the family with them.
    tiny_options: dict[str, Any] = field(default_factory=dict)
    #: Options a model of width 32 or less needs (the smoke profile's width), where a default
    #: does not fit such a width (RWKV's head size of 64).
    narrow_options: dict[str, Any] = field(default_factory=dict)
    #: K runs of the family that differ only in their seeds can train as one batched model
    #: (`countlib.train.stacked`): its modules have stacked forms there.
    stackable: bool = False
    #: Estimated V100 seconds per optimizer step and layer at the paper's size, evaluation
    #: included; `countlib.sweep.estimate` adds a fixed overhead per step. The Transformer's is
    #: measured (seed-spec 1.9, at width 1024; it scales with width squared); the recurrent
    #: families' were never timed by the paper's authors and are assumptions at width 128
    #: (cuDNN RNN/LSTM, S4's FFT convolution, the Mamba and RWKV kernels; 0.006 elsewhere).
    layer_step_s: float = 0.006
    #: The book's page that shows the family, a key of `PAGES` (its thin notebook is
    #: ``notebooks/<page>.ipynb``); empty, or a name not there: a page of its own
    #: (`family_pages`). The book executes every page from ``notebooks/train_family.ipynb``.
    page: str = ""

    @property
    def config(self) -> type:
        """The family's config dataclass."""
        return _attribute(self.module, self.config_class)

    @property
    def model(self) -> type:
        """The family's model class (a torch module)."""
        return _attribute(self.module, self.model_class)


def _attribute(module: str, name: str | type) -> Any:
    if isinstance(name, type):
        return name
    if ":" in name:
        return import_object(name)
    path = module if "." in module else f"countlib.models.{module}"
    return getattr(importlib.import_module(path), name)


class ModelImportError(ValueError):
    """An import path (``package.module:Class``) that does not give a class: the message names
    the path and what is missing."""


def import_object(path: str) -> Any:
    """The object that the import path ``package.module:Name`` names."""
    module, sep, name = path.partition(":")
    if not (sep and module and name):
        raise ModelImportError(f"{path!r} is not an import path; write package.module:Class")
    try:
        loaded = importlib.import_module(module)
    except ImportError as err:
        raise ModelImportError(
            f"cannot import module {module!r} of {path!r} ({err}); install its package or put "
            "its folder on PYTHONPATH"
        ) from None
    try:
        return getattr(loaded, name)
    except AttributeError:
        classes = sorted(k for k, v in vars(loaded).items() if isinstance(v, type))
        raise ModelImportError(
            f"module {module!r} has no {name!r} (from {path!r}); its classes: "
            f"{', '.join(classes) or 'none'}"
        ) from None


#: PyTorch's AdamW betas, which every original trainer but RWKV's kept.
TORCH_BETAS = (0.9, 0.999)
#: Every original trainer but RWKV's: PyTorch's AdamW betas, no L2Wrap.
_TORCH_OPTIMIZER = {"betas": TORCH_BETAS, "l2wrap": 0.0}
#: seed-spec 3.3 (the RNN/LSTM/S4 trainer): PyTorch's AdamW, fp16 autocast with loss scaling
#: (the original's accelerate fp16).
_S4_TRAINER = _TORCH_OPTIMIZER | {"gpu_precision": "fp16"}
#: seed-spec 3.5: FusedAdam betas (0.9, 0.99), L2Wrap 1e-4, Lightning bf16 (seed-spec 3.1's
#: launch line; the wkv kernels take bf16).
_RWKV_TRAINER = {"betas": (0.9, 0.99), "l2wrap": 1e-4, "gpu_precision": "bf16"}
_RECURRENT = {"lr": 5e-3, "weight_decay": 0.0, "warmup_steps": 0, "steps": 10_000} | _S4_TRAINER
#: The later recurrent families (DeltaNet, Gated DeltaNet, Mamba-2, minGRU, minLSTM, sLSTM) are
#: not in the paper, and their papers' language-model settings do not carry over to these tasks:
#: CPU defaults without a source (lr 1e-3, no weight decay, constant, the other recurrent
#: families' 10k steps; untuned), PyTorch's AdamW betas and no L2Wrap as every original trainer
#: but RWKV's.
_LATER_RECURRENT = {"lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 0, "steps": 10_000}
_LATER_RECURRENT |= _TORCH_OPTIMIZER
#: RNN, LSTM and GRU: torch's (cuDNN's) modules, which stack.
_CUDNN_RNN = {
    "tiny_options": {"hidden": 16},
    "stackable": True,
    "layer_step_s": 0.002,
    "page": "train_rnn",
}
#: seed-spec 3.3: lr 0.01, weight decay 0.01, constant; SSM parameters get min(1e-3, lr).
#: Model default S4Config.b_imag_clip = 2.0: the S4 code the original copied (seed-spec 2.2,
#: HiPPO-LegS DPLR init; state-spaces/s4 ``nplr(B_clip=2.0)``) clips Im(B) at +-2, in S4D-LegS
#: too; None turns the clip off.
_S4 = {
    "lr": 1e-2,
    "weight_decay": 0.01,
    "warmup_steps": 0,
    "tiny_options": {"hidden": 8, "d_state": 8},
    "layer_step_s": 0.004,
    "page": "train_s4",
} | _S4_TRAINER
#: seed-spec 3.5: lr 1e-4 constant, no weight decay (x2 lr on the base decay vector). A width of
#: 32 or less takes head size 16: the default 64 exceeds it.
_RWKV = {
    "lr": 1e-4,
    "weight_decay": 0.0,
    "warmup_steps": 0,
    "tiny_options": {"hidden": 16, "head_size": 8, "layers": 1, "dim_ffn": 32},
    "narrow_options": {"head_size": 16},
    "layer_step_s": 0.006,
    "page": "train_rwkv",
} | _RWKV_TRAINER
#: GPU precision bf16 where flash-linear-attention has kernels (its chunk kernels refuse fp32
#: inputs, e.g. chunk_delta_rule); the countlib forms keep their recurrences in fp32 under
#: autocast. fp32 for the families without GPU kernels, as the original's Mamba trainer
#: (seed-spec 3.4).
_DELTANET = {
    "gpu_precision": "bf16",
    "tiny_options": {"hidden": 16, "heads": 2, "layers": 1},
    "page": "train_deltanet",
} | _LATER_RECURRENT
_MINRNN = {
    "gpu_precision": "fp32",
    "tiny_options": {"hidden": 16, "layers": 1},
    "page": "train_minrnn",
} | _LATER_RECURRENT

MODELS: dict[str, Family] = {
    # Documented CPU defaults: a 1-layer LSTM of width 128 counts Shifted Start and mod 10
    # inductively within this budget (the paper's winning settings were not published).
    # Betas, L2Wrap and precision as the original RNN/LSTM trainer (GRU, not in the original,
    # shares them).
    "rnn": Family("rnn", "RNNConfig", "RecurrentModel", **_RECURRENT, **_CUDNN_RNN),
    "lstm": Family("rnn", "LSTMConfig", "RecurrentModel", **_RECURRENT, **_CUDNN_RNN),
    "gru": Family("rnn", "GRUConfig", "RecurrentModel", **_RECURRENT, **_CUDNN_RNN),
    # _S4: seed-spec 3.3
    "s4": Family("s4", "S4Config", "S4Model", **_S4),
    "s4d": Family("s4", "S4DConfig", "S4Model", **_S4),
    # seed-spec 3.4: AdamW 1e-4 with PyTorch's betas, no weight decay, constant, no L2Wrap,
    # fp32 (the original's accelerate mixed precision "no").
    "mamba": Family(
        "mamba",
        "MambaConfig",
        "MambaModel",
        lr=1e-4,
        weight_decay=0.0,
        warmup_steps=0,
        gpu_precision="fp32",
        built_for_device=True,
        tiny_options={"hidden": 8, "layers": 1},
        layer_step_s=0.004,
        page="train_mamba",
        **_TORCH_OPTIMIZER,
    ),
    # _RWKV: seed-spec 3.5
    "rwkv6": Family("rwkv", "RWKVConfig", "RWKVModel", **_RWKV),
    "rwkv5": Family("rwkv", "RWKV5Config", "RWKVModel", **_RWKV),
    # protocol.md: AdamW 1e-4 (PyTorch's betas), weight decay 0.01 on every parameter, 3,000
    # warmup steps, no L2Wrap; bf16 instead of the original's fp16 (protocol.md, seed-spec 7.17:
    # 19 of the original's 618 fp16 runs ended in NaN).
    "transformer": Family(
        "transformer",
        "TransformerConfig",
        "Transformer",
        lr=1e-4,
        weight_decay=0.01,
        warmup_steps=3000,
        gpu_precision="bf16",
        steps=312_500,
        tiny_options={"hidden": 16, "heads": 2, "layers": 1},
        stackable=True,
        layer_step_s=0.0079,
        page="train_transformer",
        **_TORCH_OPTIMIZER,
    ),
    # Defaults of _LATER_RECURRENT, GPU precisions as _DELTANET says.
    "deltanet": Family("deltanet", "DeltaNetConfig", "DeltaNetModel", **_DELTANET),
    "gated_deltanet": Family("deltanet", "GatedDeltaNetConfig", "DeltaNetModel", **_DELTANET),
    "mamba2": Family(
        "mamba2",
        "Mamba2Config",
        "Mamba2Model",
        gpu_precision="bf16",
        tiny_options={"hidden": 16, "head_dim": 8, "layers": 1},
        page="train_mamba2",
        **_LATER_RECURRENT,
    ),
    "mingru": Family("minrnn", "MinGRUConfig", "MinRNNModel", **_MINRNN),
    "minlstm": Family("minrnn", "MinLSTMConfig", "MinRNNModel", **_MINRNN),
    "slstm": Family(
        "slstm",
        "SLSTMConfig",
        "SLSTMModel",
        gpu_precision="fp32",
        tiny_options={"hidden": 16, "heads": 2, "layers": 1},
        page="train_slstm",
        **_LATER_RECURRENT,
    ),
}


#: Families of an optional extra, registered through their import path on first use, so that
#: the catalogue (and every registry-wide test) does not need the extra installed.
EXTRA_FAMILIES = {"hf": "countlib.models.hf:HFCausalLM"}

#: A registered family's defaults where its registration gives none: the later recurrent
#: families' untuned CPU defaults (`_LATER_RECURRENT`), fp32 on a GPU (nothing is known of the
#: family's kernels), and its own page.
USER_DEFAULTS: dict[str, Any] = _LATER_RECURRENT | {"gpu_precision": "fp32"}
#: What a registration's ``defaults`` may set: every field of `Family` but where its classes are.
DEFAULT_KEYS = tuple(
    f.name for f in fields(Family) if f.name not in ("module", "config_class", "model_class")
)
_PRECISIONS = ("bf16", "fp16", "fp32")


class UnknownModelError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def get_family(name: str) -> Family:
    """The registered family ``name``; a family of `EXTRA_FAMILIES` or a model class by import
    path (``package.module:Class``) registers on first use; else an error naming the close and
    the valid names."""
    family = MODELS.get(name)
    if family is not None:
        return family
    if name in _NOT_REGISTERED:
        raise UnknownModelError(_NOT_REGISTERED[name])
    path = EXTRA_FAMILIES.get(name, name)
    if ":" in path:
        return _register_path(name, path)
    close = difflib.get_close_matches(name, [*MODELS, *EXTRA_FAMILIES], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}.{hint} Valid models: {', '.join(sorted(MODELS))}; with an "
        f"extra: {', '.join(EXTRA_FAMILIES)}; or a model class by import path, "
        "package.module:Class"
    )


def register(
    name: str,
    config_cls: type | str,
    module_cls: type | str,
    defaults: dict[str, Any] | None = None,
) -> Family:
    """Add the family ``name``: its config dataclass and model class (the classes, or import
    paths ``package.module:Class``) and ``defaults``, any of `DEFAULT_KEYS` (the rest are
    `USER_DEFAULTS`). The classes must meet `countlib.models.contract`. Without a ``page`` the
    family gets a book page of its own (`family_pages`).

    A registration lasts for this process and the pool executor's workers, which register it
    again from its classes' import paths (`registrations`, `register_again`): classes defined
    in a notebook or inside a function have none, so train them with the sequential executor.
    Ray's workers know a family by import path only (`get_family`).
    """
    if not isinstance(name, str) or not re.fullmatch(r"[\w.:-]+", name):
        raise ValueError(f"a model name is letters, digits and _ . : - only, got {name!r}")
    if name in MODELS:
        taken = MODELS[name].model_class
        by = getattr(taken, "__qualname__", taken)
        raise ValueError(f"model name {name!r} is taken (by {by}); choose another name")
    defaults = dict(defaults or {})
    unknown = sorted(set(defaults) - set(DEFAULT_KEYS))
    if unknown:
        raise ValueError(
            f"model {name!r}: no default(s) {', '.join(unknown)}; valid: {', '.join(DEFAULT_KEYS)}"
        )
    settings = USER_DEFAULTS | defaults
    if settings["gpu_precision"] not in _PRECISIONS:
        raise ValueError(
            f"model {name!r}: gpu_precision {settings['gpu_precision']!r}; choose from "
            f"{', '.join(_PRECISIONS)}"
        )
    from countlib.models.contract import check_contract  # needs the classes, and so torch

    config, model = (_attribute("", cls) for cls in (config_cls, module_cls))
    check_contract(name, config, model)
    family = Family(model.__module__, config_cls, module_cls, **settings)
    MODELS[name] = family
    _REGISTERED[name] = (_import_path(config_cls), _import_path(module_cls), defaults)
    return family


#: The families `register` added in this process: name -> the import paths of their config and
#: model classes, and their defaults (`registrations`).
_REGISTERED: dict[str, tuple[str, str, dict[str, Any]]] = {}
#: Families another process registered that this one could not (`register_again`): name -> why.
_NOT_REGISTERED: dict[str, str] = {}


def _import_path(cls: type | str) -> str:
    return cls if isinstance(cls, str) else f"{cls.__module__}:{cls.__qualname__}"


def registrations() -> dict[str, tuple[str, str, dict[str, Any]]]:
    """The families `register` added in this process, for a process that trains for it (a pool
    worker) to `register_again`; one taken out of `MODELS` since is left out."""
    return {name: found for name, found in _REGISTERED.items() if name in MODELS}


def register_again(families: Mapping[str, tuple[str, str, dict[str, Any]]]) -> None:
    """Register ``families`` (`registrations` of another process) here. One whose classes
    cannot be imported here is left out, and `get_family` of it says why."""
    for name, (config_path, model_path, defaults) in families.items():
        if name in MODELS:
            continue
        try:
            register(name, config_path, model_path, defaults)
        except Exception as err:  # any failure to import or check: said when the run asks for it
            _NOT_REGISTERED[name] = (
                f"model {name!r} was registered in the sweep's process, but its worker cannot "
                f"import it ({err}); define its classes in an importable module (a package, or "
                "the script that runs the sweep), or train with the sequential executor"
            )


def _register_path(name: str, path: str) -> Family:
    """Register the model class at import path ``path`` as ``name``, with the config dataclass
    of its ``config_class`` attribute and the defaults of its ``family_defaults``."""
    model = import_object(path)
    config = getattr(model, "config_class", None)
    if not isinstance(config, type):
        raise ModelImportError(
            f"{path!r} has no config_class: set config_class = <its config dataclass> on the "
            "class, or register it with countlib.models.register"
        )
    return register(name, config, path, getattr(model, "family_defaults", None))


# -- the book's family pages ----------------------------------------------------------------------


@dataclass(frozen=True)
class PageParameter:
    """A notebook parameter of a family page: it sets the key of its name in the page's default
    grid entry (a model option, or "model"), the name a sweep spec and the CLI use too."""

    default: Any
    comment: str = ""


@dataclass(frozen=True)
class FamilyPage:
    """A page of the book, and the notebook ``notebooks/<name>.ipynb`` it executes, showing the
    runs of the families whose `Family.page` names it (`countlib.notebooks` writes the
    notebook from this entry).

    Without a profile or a grid, the notebook trains its own small CPU grid: ``task`` with each
    `parameters` entry (the notebook parameter of that name sets the grid key), ``model`` fixed
    to `model` where the page has no "model" parameter, at ``steps``, ``lr`` and
    ``warmup_steps`` (None: the family's defaults).
    """

    title: str
    intro: str
    parameters: dict[str, PageParameter]
    steps: int
    lr: float | None = None
    warmup_steps: int | None = None
    model: str | None = None

    def grid_entry(self, task: str, family: str) -> dict[str, Any]:
        """The page's own grid for ``task`` and ``family`` (the page's fixed `model` if it has
        one): every parameter's default under its name."""
        entry = {"task": task, "model": self.model or family}
        return entry | {key: p.default for key, p in self.parameters.items() if key != "model"}


def _model_parameter(default: str, comment: str) -> PageParameter:
    return PageParameter([default], comment)


_SIZE = {"layers": PageParameter(2), "hidden": PageParameter(64)}

#: In the book's order.
PAGES: dict[str, FamilyPage] = {
    "train_rnn": FamilyPage(
        "Recurrent baselines: Elman RNN, LSTM, GRU",
        "The paper's LSTM counts inductively: trained on counts up to 50, it keeps counting "
        "beyond. This page shows the recurrent baselines' runs: IND/OOD accuracy and the "
        "accuracy at every position.",
        {
            "model": _model_parameter("lstm", "any of rnn, lstm, gru"),
            "layers": PageParameter(1),
            "hidden": PageParameter(128),
        },
        steps=4000,
    ),
    "train_transformer": FamilyPage(
        "Transformers and positional embeddings",
        "The same GPT-2-style model with different positional schemes (NoPE, SinePE, APE, "
        "RoPE, SPE, and beyond the paper ALiBi, T5 bias and combinations). Every scheme except "
        "NoPE trains with shifted position ids, as in the paper.",
        {
            "pe": PageParameter(
                ["nope", "rope"], 'nope, sine, ape, rope, spe, alibi, t5, "rope+ape", ...'
            ),
            **_SIZE,
            "heads": PageParameter(4),
        },
        steps=1500,
        lr=1e-3,
        warmup_steps=200,
        model="transformer",
    ),
    "train_s4": FamilyPage(
        "S4 and S4D",
        "The full S4 (HiPPO-LegS, DPLR kernel) and its diagonal variant S4D. The paper reports "
        "that S4 fails to count inductively where an LSTM succeeds.",
        {"model": _model_parameter("s4", "s4 (DPLR) or s4d (diagonal)"), **_SIZE},
        steps=800,
    ),
    "train_mamba": FamilyPage(
        "Mamba",
        "Mamba (S6) with the original sizes. On CPU countlib uses its own parameter-compatible "
        "selective scan; on GPU the mamba-ssm kernels when installed. The backend is recorded "
        "in every run's environment.json.",
        {"model": _model_parameter("mamba", "mamba"), **_SIZE},
        steps=800,
        lr=1e-3,
    ),
    "train_rwkv": FamilyPage(
        "RWKV-6 (Finch) and RWKV-5 (Eagle)",
        "RWKV-6, the version the paper reports, with data-dependent decay; RWKV-5 has a static "
        "decay. countlib's own chunked implementation runs on CPU; the fla kernels on GPU.",
        {
            "model": _model_parameter("rwkv6", "rwkv6 or rwkv5"),
            **_SIZE,
            "head_size": PageParameter(32, "must divide hidden"),
        },
        steps=800,
    ),
    "train_mamba2": FamilyPage(
        "Mamba-2",
        "Mamba-2 (SSD: a scalar decay per head), beyond the paper. Its transitions lie in "
        "[0, 1]; with negative_eigenvalues in [-1, 1], which linear RNNs need to count modulo m "
        "(Grazzi et al., ICLR 2025). countlib's chunked form runs on CPU, fla's kernel on GPU.",
        {
            "model": _model_parameter("mamba2", "mamba2"),
            **_SIZE,
            "head_dim": PageParameter(16, "must divide 2 x hidden"),
            "negative_eigenvalues": PageParameter([False, True]),
        },
        steps=800,
    ),
    "train_deltanet": FamilyPage(
        "DeltaNet and Gated DeltaNet",
        "Linear attention with the delta rule, beyond the paper; Gated DeltaNet adds a decay. "
        "With negative_eigenvalues the delta rule's beta lies in [0, 2], so its transitions "
        "reach -1. countlib's chunked form runs on CPU, fla's kernels on GPU.",
        {
            "model": _model_parameter("deltanet", "deltanet or gated_deltanet"),
            **_SIZE,
            "heads": PageParameter(2),
            "negative_eigenvalues": PageParameter([False, True]),
        },
        steps=800,
    ),
    "train_minrnn": FamilyPage(
        "minGRU and minLSTM",
        "Gated RNNs whose gates do not read the previous state (Feng et al. 2024), so they "
        "train with a parallel scan, beyond the paper: recurrent, but linear in the state.",
        {"model": _model_parameter("mingru", "mingru or minlstm"), **_SIZE},
        steps=800,
    ),
    "train_slstm": FamilyPage(
        "sLSTM",
        "The xLSTM's sLSTM (Beck et al. 2024), beyond the paper: a nonlinear recurrence with "
        "exponential gating and block-diagonal heads, trained step by step like an LSTM.",
        {"model": _model_parameter("slstm", "slstm"), **_SIZE, "heads": PageParameter(2)},
        steps=800,
    ),
}


def page_of(family: str) -> str:
    """The book page that shows ``family``: its entry's ``page``, else a page of its own."""
    page = get_family(family).page
    return page or "train_" + re.sub(r"\W+", "_", family)


def family_pages() -> dict[str, FamilyPage]:
    """Every family page: `PAGES`, then one for each registered family whose page is not there,
    with the model class's first docstring line for an introduction and no grid of its own
    (the notebook's ``options`` set the family's options)."""
    pages = dict(PAGES)
    for name in MODELS:
        page = page_of(name)
        if page not in pages:
            doc = (get_family(name).model.__doc__ or "").strip().split("\n")[0]
            intro = doc or "A model family registered with countlib.models.register."
            pages[page] = FamilyPage(name, intro, {}, steps=800)
    return pages


def page_families(page: str) -> list[str]:
    """The families a page shows, in registry order."""
    return [name for name in MODELS if page_of(name) == page]
