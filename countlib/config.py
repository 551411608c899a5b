"""Declarative run configuration: what to train, how, and how to evaluate it.

A `RunConfig` is plain data (JSON/YAML round-trip), validated on construction. `resolve()` fills
every family default in, and the hash of the resolved config names the run directory, so the same
experiment always lands in the same place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from countlib.batches import (
    BOUNDED_SCHEMES,
    FLOAT_SCHEMES,
    POSITION_SCHEMES,
    RANDOM_SCHEMES,
    positions_needed,
)
from countlib.models import get_family, model_config
from countlib.plateau import PLATEAU_TOLERANCE
from countlib.tasks import Task, get_task
from countlib.validation import (
    MAX_STEPS,
    SEED_LIMIT,
    check_at_least,
    check_below,
    check_field_types,
    is_number,
)

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass
class OptimConfig:
    """AdamW with linear warmup then a constant rate; budget in optimizer steps.

    ``steps``, ``lr``, ``weight_decay``, ``warmup_steps``, ``betas`` and ``l2wrap`` of None take
    the model family's default (`countlib.models.MODELS`).
    """

    steps: int | None = None
    batch_size: int = 32
    lr: float | None = None
    weight_decay: float | None = None
    warmup_steps: int | None = None
    #: AdamW's (beta1, beta2).
    betas: tuple[float, float] | None = None
    grad_clip: float = 1.0
    #: Strength of RWKV-LM's L2Wrap logit regulariser (the original's 1e-4); 0 turns it off.
    l2wrap: float | None = None

    def __post_init__(self) -> None:
        if self.betas is not None:
            self.betas = _betas(self.betas)
        check_field_types(self)
        check_at_least(self, 1, "steps", "batch_size")
        check_below(self, MAX_STEPS, "steps", "warmup_steps")
        # a negative warmup makes the rate factor negative: gradient ascent; 0 means no warmup
        check_at_least(self, 0, "warmup_steps", "weight_decay", "grad_clip", "l2wrap")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


def _betas(value: Any) -> tuple[float, float]:
    """A (beta1, beta2) pair from a tuple or a JSON/YAML list."""
    if not isinstance(value, list | tuple) or len(value) != 2 or not all(map(is_number, value)):
        raise ValueError(f"betas must be a pair [beta1, beta2] of numbers, got {value!r}")
    pair = (float(value[0]), float(value[1]))
    if not all(0 <= b < 1 for b in pair):
        raise ValueError(f"betas must lie in [0, 1), got {value!r}")
    return pair


@dataclass
class EvalConfig:
    every: int = 1000
    batch_size: int = 64
    #: Position-shift draws per evaluation example (only random schemes use more than one).
    shift_samples: int = 1
    seed: int = 0
    #: Keep each evaluation's weights (``evaluations/step-<step>.safetensors``), for the
    #: development analysis. Not part of `RunConfig.config_hash`: it changes what is kept on
    #: disk, not what is trained.
    keep_weights: bool = False
    #: Write TensorBoard event files (``<run>/tensorboard/``, `countlib.train.tensorboard_log`).
    #: An output option: not part of `RunConfig.config_hash`, and absent from the records of
    #: runs without it.
    tensorboard: bool = False
    #: Stop on a plateau (`countlib.plateau.plateaued`): when neither IND nor OOD has
    #: risen by more than ``plateau_tolerance`` (accuracy, 0-1) at any of the last
    #: ``plateau_evals`` evaluations over the best before them; ``optim.steps`` is then a cap.
    #: None: train to ``optim.steps``. Part of the run's identity when set, and left out of its
    #: records when not, so runs recorded before the rule keep their names and files.
    plateau_evals: int | None = None
    plateau_tolerance: float | None = None

    def __post_init__(self) -> None:
        check_field_types(self)
        check_at_least(self, 1, "every", "batch_size", "shift_samples")
        check_at_least(self, 0, "seed")
        check_below(self, SEED_LIMIT, "seed")
        if self.plateau_evals is not None and self.plateau_evals < 1:
            raise ValueError(f"plateau_evals must be at least 1, got {self.plateau_evals}")
        if self.plateau_tolerance is not None:
            if self.plateau_evals is None:
                raise ValueError("plateau_tolerance needs plateau_evals (the evaluations to wait)")
            if not 0 <= self.plateau_tolerance < 1:
                raise ValueError(
                    f"plateau_tolerance is an accuracy in [0, 1), got {self.plateau_tolerance}"
                )


def _section(cls: type, value: dict[str, Any], name: str) -> Any:
    """``cls`` from a mapping; an unknown key is a ValueError listing the valid ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise ValueError(f"unknown {name} key(s) {unknown}; valid: {sorted(names)}")
    return cls(**value)


@dataclass
class RunConfig:
    task: str
    model: str
    #: Family options, e.g. {"layers": 1, "hidden": 128}; see the family's config dataclass.
    model_options: dict[str, Any] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    #: Model initialisation seed; the data stream has its own seed.
    seed: int = 1234
    data_seed: int | None = None
    #: Share of auxiliary data for mixture tasks (None = the original proportion).
    aux_share: float | None = None
    position_scheme: str | None = None
    precision: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.optim, dict):
            self.optim = _section(OptimConfig, self.optim, "optim")
        if isinstance(self.eval, dict):
            self.eval = _section(EvalConfig, self.eval, "eval")
        check_field_types(self)
        check_at_least(self, 0, "seed", "data_seed")
        check_below(self, SEED_LIMIT, "seed", "data_seed")
        task = get_task(self.task)
        model_cfg = self.model_config(task)
        self._check_warmup()
        if self.position_scheme is not None and self.position_scheme not in POSITION_SCHEMES:
            raise ValueError(
                f"unknown position scheme {self.position_scheme!r}; "
                f"choose from {', '.join(POSITION_SCHEMES)}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose from {PRECISIONS}")
        if self.aux_share is not None:
            if not hasattr(task, "with_aux_share"):
                raise ValueError(f"task {task.name!r} has no auxiliary data to share")
            task.with_aux_share(self.aux_share)  # rejects shares outside [0, 1)
        self._check_positions(task, model_cfg)

    def _check_warmup(self) -> None:
        """A warmup of the run's own longer than the run never reaches its learning rate. The
        family's default (the paper's 3,000 steps for Transformers) is not the run's own: a
        resolved config (`resolve`) spells it out, and a short run keeps it as it always has."""
        warmup, family = self.optim.warmup_steps, get_family(self.model)
        steps = family.steps if self.optim.steps is None else self.optim.steps
        if warmup is not None and warmup != family.warmup_steps and warmup > steps:
            raise ValueError(
                f"warmup_steps {warmup} is longer than the run ({steps} steps): its learning "
                f"rate would never reach lr; set warmup_steps to at most {steps}"
            )

    def _check_positions(self, task: Task, model_cfg: Any) -> None:
        """Reject position ids that the collator or the model would refuse at the first batch
        that shows them, after the run directory exists: a bounded scheme whose range cannot
        hold the task's longest sequence, or ids of a kind or range the model cannot take."""
        scheme = self._scheme(model_cfg)
        # the collator's range: the model's option where the family has one, else the task's
        available = getattr(model_cfg, "max_positions", task.max_positions)
        needed = positions_needed(task)
        if scheme in BOUNDED_SCHEMES and available < needed:
            raise ValueError(
                f"position scheme {scheme!r} places every sequence within max_positions = "
                f"{available} ids, but the longest sequence of task {task.name!r} needs "
                f"{needed}; set max_positions to at least {needed}"
            )
        if hasattr(model_cfg, "check_positions"):  # families that read positions
            model_cfg.check_positions(scheme, floats=scheme in FLOAT_SCHEMES, needed=needed)

    def _scheme(self, model_cfg: Any) -> str:
        """The position scheme the run uses: its own, else the model's or the family's default."""
        family_default = get_family(self.model).position_scheme
        return self.position_scheme or getattr(model_cfg, "default_position_scheme", family_default)

    def model_config(self, task: Task) -> Any:
        return model_config(
            self.model, len(task.vocab), self.model_options, max_positions=task.max_positions
        )

    def resolve(self) -> RunConfig:
        """A copy with canonical task name and every default made explicit."""
        task = get_task(self.task)
        family = get_family(self.model)
        model_cfg = self.model_config(task)
        options = asdict(model_cfg)
        options.pop("vocab_size")
        scheme = self._scheme(model_cfg)
        optim = dataclasses.replace(
            self.optim,
            steps=family.steps if self.optim.steps is None else self.optim.steps,
            lr=family.lr if self.optim.lr is None else self.optim.lr,
            weight_decay=(
                family.weight_decay if self.optim.weight_decay is None else self.optim.weight_decay
            ),
            warmup_steps=(
                family.warmup_steps if self.optim.warmup_steps is None else self.optim.warmup_steps
            ),
            betas=family.betas if self.optim.betas is None else self.optim.betas,
            l2wrap=family.l2wrap if self.optim.l2wrap is None else self.optim.l2wrap,
        )
        return dataclasses.replace(
            self,
            task=task.name,
            model_options=options,
            optim=optim,
            data_seed=self.seed if self.data_seed is None else self.data_seed,
            aux_share=(
                task.aux_share
                if self.aux_share is None and hasattr(task, "aux_share")
                else self.aux_share
            ),
            position_scheme=scheme,
            # a fixed position scheme gives the same ids on every draw: one draw is all of them
            eval=dataclasses.replace(
                self.eval,
                shift_samples=self.eval.shift_samples if scheme in RANDOM_SCHEMES else 1,
                plateau_tolerance=(
                    PLATEAU_TOLERANCE
                    if self.eval.plateau_evals is not None and self.eval.plateau_tolerance is None
                    else self.eval.plateau_tolerance
                ),
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not data["eval"]["tensorboard"]:
            del data["eval"]["tensorboard"]  # the records of runs before the option, unchanged
        if data["eval"]["plateau_evals"] is None:
            # no plateau rule: the record, and so the identity, of runs before the rule existed
            del data["eval"]["plateau_evals"], data["eval"]["plateau_tolerance"]
        if data["optim"]["betas"] is not None:
            data["optim"]["betas"] = list(data["optim"]["betas"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown run config key(s) {unknown}; valid: {sorted(names)}")
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """A config from a JSON or YAML file; every error names the file (and line)."""
        data = read_yaml(path) if str(path).endswith((".yaml", ".yml")) else read_json(path)
        if not isinstance(data, dict):
            raise ConfigFileError(f"{path}: a run config must be a mapping, got {data!r}")
        try:
            return cls.from_dict(data)
        except ValueError as err:
            raise ConfigFileError(f"{path}: {err}") from None

    def config_hash(self) -> str:
        """Stable identity of the resolved experiment (12 hex digits).

        A family's ``LATER_OPTIONS`` (options added after runs were recorded) are left out at
        the value that reproduces the earlier runs, so adding an option renames no run.
        """
        data = self.resolve().to_dict()
        # what is kept on disk, not what is trained: the same run with or without it
        del data["eval"]["keep_weights"]
        data["eval"].pop("tensorboard", None)
        later = getattr(get_family(self.model).config, "LATER_OPTIONS", {})
        for key, neutral in later.items():
            if data["model_options"].get(key) == neutral:
                del data["model_options"][key]
        canonical = json.dumps(data, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def run_name(self) -> str:
        resolved = self.resolve()
        opts = resolved.model_options
        shape = f"L{opts.get('layers', '?')}-H{opts.get('hidden', '?')}"
        if "pe" in opts:
            shape += f"-{opts['pe'].replace('+', '_')}"
        if opts.get("causal") is False:
            shape += "-bidirectional"
        # a model by import path (package.module:Class): no colon in a directory name
        model = resolved.model.replace(":", ".")
        return f"{resolved.task}-{model}-{shape}-s{resolved.seed}-{self.config_hash()}"


class ConfigFileError(ValueError):
    """A config or spec file that cannot be read; the message names the file (and line)."""


def _read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigFileError(f"{path}: not UTF-8 text (byte {err.start})") from None


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise ConfigFileError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    except RecursionError:
        raise ConfigFileError(f"{path}: JSON nested too deeply") from None


def read_yaml(path: str | Path) -> Any:
    import yaml  # only YAML files need it

    try:
        return yaml.safe_load(_read_text(path))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f":{mark.line + 1}" if mark else ""
        reason = err.problem or err.context
        raise ConfigFileError(f"{path}{line}: not valid YAML ({reason})") from None
    except yaml.YAMLError as err:
        raise ConfigFileError(f"{path}: not valid YAML ({err})") from None
    except RecursionError:
        raise ConfigFileError(f"{path}: YAML nested too deeply") from None
