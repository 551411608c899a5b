"""One training loop for every model family.

The loop draws batches on the fly from the task's seeded sampler, evaluates every
``eval.every`` steps on all of the task's splits, and checkpoints the full training state at
each evaluation so that a killed run resumes exactly where its last checkpoint left it. With
``eval.keep_weights`` it also keeps the model weights of every evaluation (step 0 included).
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm  # tqdm.auto warns in notebooks without ipywidgets

import countlib
from countlib.batches import Batch, Collator, evaluation_batches
from countlib.config import OptimConfig, RunConfig
from countlib.metrics import EvalResult
from countlib.models import (
    backend_names,
    backend_notes,
    build_model,
    freeze_token_rows,
    parameter_count,
)
from countlib.models.rwkv import l2wrap
from countlib.plateau import history_of, plateaued
from countlib.tasks import Task, get_task
from countlib.train.checkpoint import (
    UNRESUMABLE_HINT,
    CheckpointError,
    load_state,
    save_state,
    save_weights,
)
from countlib.train.evaluate import evaluate_batches
from countlib.train.placement import (
    Placement,
    parameters_device,
    refuse_distributed_launch,
)
from countlib.train.records import (
    TALLIES,
    TRAIN_LOG_COLUMNS,
    RunDir,
    append_csv_row,
    atomic_write_csv,
    atomic_write_json,
    environment_record,
)
from countlib.train.stream import TrainingBatches
from countlib.train.stream import batches_ahead as batches_ahead_by_default
from countlib.train.tensorboard_log import RunBoard, require_tensorboard
from countlib.train.threads import ThreadCountChangedError, cpu_threads

BEST_CHECKPOINT_NOTE = (
    "best_ood selects the checkpoint on the OOD test split itself, as the paper's protocol does; "
    "best_val selects on the in-distribution validation split. Only trained evaluations "
    "(step > 0) are candidates, and a tie goes to the later step."
)

#: A log interval whose mean training loss exceeds this many times log(vocabulary size), the
#: loss of a uniform prediction, has diverged: training starts near that loss and only lowers
#: it, so ten times it is an exploded run, not a slow one.
DIVERGENCE_FACTOR = 10.0


@dataclass
class TrainResult:
    run_dir: RunDir
    status: str
    summary: dict[str, Any]
    skipped: bool = False


def build_optimizer(
    params: Iterable[Any], optim: OptimConfig, *, fused: bool = False
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``params`` (tensors or param groups) and its schedule: linear warmup over
    ``optim.warmup_steps``, then constant. ``fused``: torch's single-kernel AdamW, the same
    update rounded differently (about 1e-7), instead of its default (unfused) kernels."""
    optimizer = torch.optim.AdamW(
        params,
        lr=optim.lr,
        weight_decay=optim.weight_decay,
        betas=optim.betas,
        fused=fused or None,
    )
    warmup = optim.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
    )
    return optimizer, scheduler


def task_for(config: RunConfig) -> Task:
    task = get_task(config.task)
    if config.aux_share is not None and hasattr(task, "with_aux_share"):
        task = task.with_aux_share(config.aux_share)
    return task


class BackendChangedError(ValueError):
    """A run would resume on other kernels than it trained on so far."""


class Trainer:
    """Trains one run to its final status, ``complete`` or ``diverged``.

    The run owns its device, autocast and loss scaler (`countlib.train.placement.Placement`),
    so one process trains any sequence of runs at any devices and precisions.

    Divergence: at every log interval (``log_every`` steps, and at each evaluation) the run
    stops as ``diverged`` when the interval's mean training loss is non-finite or exceeds
    `DIVERGENCE_FACTOR` (10) x log(vocabulary size), the loss of a uniform prediction; and at
    once when a step overflows float range (AdamW's step lr / (1 - beta1) at lr 1e38). The
    summary's ``reason`` says which, at what step. A diverged run is final, never retried.
    """

    def __init__(
        self,
        config: RunConfig,
        runs_dir: str | Path = "runs",
        *,
        device: str = "auto",
        progress: bool = True,
        log_every: int = 50,
        threads: int | None = None,
        allow_thread_change: bool = False,
        allow_backend_change: bool = False,
        batches_ahead: int | None = None,
    ) -> None:
        """``device``: "auto", "cpu", "cuda" (the current GPU) or "cuda:N". ``threads``: torch
        threads while training, None for the thread policy's count (`countlib.train.threads`).
        ``allow_thread_change`` resumes a CPU run at another thread count than it was trained
        at, with a warning, instead of refusing. ``batches_ahead``: training batches drawn
        ahead on a background thread, None for the default of
        `countlib.train.stream.batches_ahead` (some on CUDA, none on CPU); the batches, and so
        the run's numbers, are the same either way. ``allow_backend_change`` resumes a run on
        other kernels than its last training segment ran (e.g. fla's there, countlib's here),
        with a warning, instead of refusing."""
        refuse_distributed_launch()
        self.config = config.resolve()
        self.hash = config.config_hash()
        self.run = RunDir(Path(runs_dir) / self.config.run_name())
        if self.config.eval.tensorboard:
            require_tensorboard()  # before anything trains
        #: The run's TensorBoard files while it trains (``eval.tensorboard``), else None.
        self.board: RunBoard | None = None
        self.placement = Placement.of(device, self.config.precision, self.config.model)
        #: The run's device, by index on CUDA ("cuda:0"): what its records say it trained on.
        self.device = str(self.placement.device)
        self.threads = cpu_threads() if threads is None else threads
        self.batches_ahead = batches_ahead_by_default(batches_ahead, self.device)
        self.allow_thread_change = allow_thread_change
        self.allow_backend_change = allow_backend_change
        #: Runs trained together with this one as one batched model (`countlib.train.stacked`),
        #: recorded with each training segment: their wall time is the group's. 1: alone.
        self.stacked_runs = 1
        self.progress = progress
        self.log_every = log_every
        self.task = task_for(self.config)
        self.collator = Collator(
            self.task,
            self.config.position_scheme,
            max_positions=self.config.model_options.get("max_positions"),
        )

    # -- set-up ------------------------------------------------------------------------------

    def build(self) -> None:
        cfg = self.config
        # Here rather than in __init__: a completed run is skipped without generating its splits.
        self.splits = {name: self.task.split(name, seed=cfg.eval.seed) for name in self.task.splits}
        self._evaluation_batches: dict[str, list[Batch]] | None = None
        torch.manual_seed(cfg.seed)
        # initialised on the CPU whatever the device, so that a seed gives the same weights
        model = build_model(
            cfg.model, len(self.task.vocab), device=self.placement.device, **cfg.model_options
        )
        self.model = model.to(self.placement.device)
        # The nullseq tasks' <null> row: zero and untrained in every family (seed-spec 7.14).
        frozen = self.task.vocab.ids(self.task.frozen_tokens)
        self.zero_frozen_rows = freeze_token_rows(model, frozen)
        groups = model.param_groups(cfg.optim) if hasattr(model, "param_groups") else None
        # after the move: fused AdamW takes CUDA parameters only
        self.optimizer, self.scheduler = build_optimizer(
            groups or model.parameters(), cfg.optim, fused=self.fused_adamw()
        )
        # "/0": the stream of process 0, as runs were recorded when a launcher could add ranks
        self.data_rng = random.Random(f"data/{cfg.data_seed}/0")
        self._training_batches: TrainingBatches | None = None
        self.step = 0
        self.train_rows: list[list[Any]] = []
        self.eval_rows: list[list[Any]] = []
        #: Per-position, per-count and per-length tallies: [step, split, key, correct, total].
        self.tally_rows: dict[str, list[list[Any]]] = {kind: [] for kind in TALLIES}
        self.best: dict[str, dict[str, Any]] = {}
        self.elapsed = 0.0
        #: One entry per (re)start of training: the step it began at and its threads, device
        #: and versions (what exact resume depends on).
        self.segments: list[dict[str, Any]] = []

    def fused_adamw(self) -> bool:
        """Fused AdamW on CUDA, where it replaces a few kernel launches per parameter group
        with one. On CPU torch's default (unfused) kernels stay, so CPU runs keep the numbers
        recorded before it. A resumed run keeps the kind it started with: the optimizer's state
        carries it."""
        return self.device.startswith("cuda")

    def _state(self) -> dict[str, Any]:
        scaler = self.placement.scaler
        device_rng = self.placement.rng_state()
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "torch_rng": torch.get_rng_state(),
            # the training GPU's alone: a process that sees other GPUs restores it all the same
            "device_rng": device_rng if device_rng is not None else [],
            "data_rng": json.dumps(self._data_rng_state()),
            "history": json.dumps(
                {
                    "train": self.train_rows,
                    "eval": self.eval_rows,
                    "tallies": self.tally_rows,
                    "best": self.best,
                    "elapsed": self.elapsed,
                    "segments": self.segments,
                }
            ),
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.placement.scaler is not None and state["scaler"]:
            self.placement.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        self.placement.set_rng_state(_device_rng(state, self.placement.device))
        version, internal, gauss = json.loads(state["data_rng"])
        self.close_batches()  # any batches drawn ahead came from the state before this one
        self.data_rng.setstate((version, tuple(internal), gauss))
        history = json.loads(state["history"])
        self.train_rows = history["train"]
        self.eval_rows = history["eval"]
        self.tally_rows = history["tallies"]
        self.best = history["best"]
        self.elapsed = history["elapsed"]
        # checkpoints written before segments were recorded have none
        self.segments = history.get("segments", [])
        self.step = state["step"]

    def _resume(self) -> None:
        """Restore the state of ``last.pt``; a checkpoint that cannot resume the run (truncated,
        another run's, without a piece of the state) is a CheckpointError saying how to
        retrain it."""
        try:
            self._restore(load_state(self.run.last, self.hash))
        except CheckpointError as err:
            raise CheckpointError(f"{err}; {UNRESUMABLE_HINT}") from None
        except (KeyError, TypeError, ValueError, RuntimeError) as err:  # loads, but not this state
            problem = f"{self.run.last} does not hold this run's training state ({err!r})"
            raise CheckpointError(f"{problem}; {UNRESUMABLE_HINT}") from None

    # -- the loop ----------------------------------------------------------------------------

    def run_training(self) -> TrainResult:
        final = self.final_result()
        if final is not None:
            return final
        with self.run.lock(), _torch_threads(self.threads), self.placement.current():
            if self.run.is_complete():  # another process finished it while we waited
                return self.run_training()
            self.start()
            try:
                return self._loop()
            finally:
                self.close_batches()
                self.close_board()

    def final_result(self) -> TrainResult | None:
        """The recorded result of a run that is final already, None if it has to train."""
        if not self.run.is_complete():
            return None
        # a broken record (truncated, emptied, another run's) raises, naming the file
        summary = self.run.read_final(self.hash)
        return TrainResult(self.run, summary["status"], summary, skipped=True)

    def start(self) -> None:
        """Build the run, resume it from its last checkpoint if it has one, and record this
        start; a fresh run is evaluated (step 0) and checkpointed. Call it holding the lock."""
        # what a writer killed mid-write left behind; nobody else writes them while we lock
        self.run.remove_stale_temp_files()
        self.build()
        resuming = self.run.last.exists()
        if resuming:
            self._resume()
        self._start_segment()
        self._write_static_records()
        # train.csv as of the checkpoint: the rows a killed segment appended after it are
        # trained again, and must not be there twice
        atomic_write_csv(self.run.train_log, TRAIN_LOG_COLUMNS, self.train_rows)
        if self.config.eval.tensorboard:
            self.board = RunBoard(self.run.tensorboard, resumed_at=self.step if resuming else None)
        if not resuming:
            self.evaluate_and_checkpoint()

    def _start_segment(self) -> None:
        """Record this (re)start; refuse to resume a CPU run at another thread count than the
        segment before, which would end with other numbers than an uninterrupted run."""
        segment = {
            "started_at_step": self.step,
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            # read from the model: where its parameters are, not what was asked for
            "device": str(parameters_device(self.model)),
            "precision": self.placement.precision,
            "backends": backend_names(self.model),
            "backend_notes": backend_notes(self.model),
            "torch_threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "torch": torch.__version__,
            "countlib": countlib.__version__,
            "stacked_runs": self.stacked_runs,
            "batches_ahead": self.batches_ahead,
            "adamw": "fused" if self.optimizer.param_groups[0]["fused"] else "unfused",
        }
        if self.segments:
            self._check_thread_count(self.segments[-1], segment)
            self._check_backends(self.segments[-1], segment)
        self.segments.append(segment)

    def _check_thread_count(self, previous: dict[str, Any], segment: dict[str, Any]) -> None:
        # GPU kernels do not depend on the CPU thread count; CPU reductions do
        was, now = previous["torch_threads"], segment["torch_threads"]
        if previous["device"] != "cpu" or self.device != "cpu" or was == now:
            return
        change = (
            f"{self.run.path} was trained at {was} torch threads until step {self.step}; "
            f"resuming at {now} would end with other numbers than an uninterrupted run"
        )
        exactly = f"Resume exactly with OMP_NUM_THREADS={was}"
        allowed = self.allow_thread_change
        _refuse_or_warn(change, exactly, "allow_thread_change", allowed, ThreadCountChangedError)

    def _check_backends(self, previous: dict[str, Any], segment: dict[str, Any]) -> None:
        """Refuse to resume on other kernels than the segment before ran (segments recorded
        before backends were have none to compare): the run's numbers would mix the two."""
        was, now = previous.get("backends"), segment["backends"]
        if was is None or was == now:
            return
        why = "; ".join(f"{part}: {note}" for part, note in segment["backend_notes"].items())
        change = (
            f"{self.run.path} trained on backends {was} until step {self.step}; here it would "
            f"resume on {now}" + (f" ({why})" if why else "")
        )
        exactly = "Resume where the same kernels load"
        allowed = self.allow_backend_change
        _refuse_or_warn(change, exactly, "allow_backend_change", allowed, BackendChangedError)

    def _loop(self) -> TrainResult:
        self.model.train()
        step = self.train_step
        (result,) = train_runs(
            [self], lambda: step().view(1), progress=self.progress, log_every=self.log_every
        )
        return result

    def log_interval(self, mean_loss: float, elapsed: float) -> str | None:
        """Record the log interval ending at this step; why it diverged, or None."""
        lr = self.scheduler.get_last_lr()[0]
        row = [self.step, mean_loss, lr, round(elapsed, 3)]
        self.train_rows.append(row)
        # on disk now, not at the next evaluation: a run killed before it keeps these losses
        append_csv_row(self.run.train_log, row)
        if self.board is not None:
            self.board.log_interval(self.step, mean_loss, lr)
        return self._divergence(mean_loss)

    def _divergence(self, mean_loss: float) -> str | None:
        """Why the log interval ending now has diverged (the class docstring's rule), or None."""
        if not math.isfinite(mean_loss):
            return f"non-finite loss at step {self.step}"
        vocab = len(self.task.vocab)
        ceiling = DIVERGENCE_FACTOR * math.log(vocab)
        if mean_loss > ceiling:
            return (
                f"loss {mean_loss:.4g} at step {self.step} exceeds {DIVERGENCE_FACTOR:g} x "
                f"log(vocabulary size {vocab}) = {ceiling:.3g}"
            )
        return None

    def stop_diverged(self, started: float, reason: str) -> TrainResult:
        """Finish the run as diverged for ``reason``; ``started``: when its clock started."""
        self.elapsed = time.perf_counter() - started
        return self.finish("diverged", reason)

    def next_batch(self) -> Batch:
        """The run's next training batch, on the host (`countlib.train.stream`)."""
        if self._training_batches is None:
            self._training_batches = TrainingBatches(
                self.task,
                self.collator,
                self.config.optim.batch_size,
                self.data_rng,
                ahead=self.batches_ahead,
                # a stacked run's batch is copied into the group's tensors, which are pinned
                pin=self.device.startswith("cuda") and self.stacked_runs == 1,
            )
        return next(self._training_batches)

    def _data_rng_state(self) -> Any:
        """The data rng's state after the batches trained on so far (what a checkpoint keeps)."""
        if self._training_batches is None:
            return self.data_rng.getstate()
        return self._training_batches.rng_state()

    def close_board(self) -> None:
        """Close the run's TensorBoard files, if it writes them."""
        if self.board is not None:
            self.board.close()

    def close_batches(self) -> None:
        """Stop drawing batches ahead; the data rng stays where the batches trained on left it."""
        if self._training_batches is not None:
            self._training_batches.close()
            self.data_rng.setstate(self._training_batches.rng_state())
            self._training_batches = None

    def train_step(self) -> torch.Tensor:
        placement = self.placement
        batch = self.next_batch().to(placement.device)
        with placement.autocast():
            logits = self.model(
                batch.input_ids,
                position_ids=batch.position_ids,
                attention_mask=batch.attention_mask,
            )
        logits = logits.float()
        loss = F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), ignore_index=-1)
        if self.config.optim.l2wrap:
            # The original padded every batch to max_seq_len, so its 1e-4 / (B * T) had
            # T = max_seq_len: each position of the shorter batches here gets its exact term.
            scale = self.config.optim.l2wrap / (logits.shape[0] * self.task.max_seq_len)
            loss = l2wrap(loss, logits, scale)
        placement.backward(loss)
        if self.config.optim.grad_clip:
            placement.unscale(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        placement.step(self.optimizer)
        self.zero_frozen_rows()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def postfix(self, loss: float) -> dict[str, str]:
        latest = {(row[1], row[2]): row[3] for row in self.eval_rows if row[0] == self._last_eval}

        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.3f}"

        return {
            "loss": f"{loss:.4f}",
            "ind": fmt(latest.get(("val", self.task.ind_metric))),
            "ood": fmt(latest.get(("ood", self.task.ood_metric))),
        }

    @property
    def _last_eval(self) -> int:
        return self.eval_rows[-1][0] if self.eval_rows else -1

    # -- evaluation and records --------------------------------------------------------------

    def evaluate_all(self) -> dict[str, EvalResult]:
        return {
            name: evaluate_batches(
                self.model,
                self.task,
                batches,
                device=self.placement.device,
                autocast=self.placement.autocast,
            )
            for name, batches in self.evaluation_batches().items()
        }

    def evaluation_batches(self) -> dict[str, list[Batch]]:
        """Each split's evaluation batches, on the device. The evaluation rng restarts from its
        seed at every evaluation, so every evaluation sees the same batches: they are collated
        and copied once per run, not at each evaluation."""
        if self._evaluation_batches is None:
            cfg = self.config.eval
            self._evaluation_batches = {
                name: [
                    batch.to(self.placement.device)
                    for batch in evaluation_batches(
                        self.task,
                        examples,
                        self.collator,
                        cfg.batch_size,
                        shift_samples=cfg.shift_samples,
                        seed=cfg.seed,
                    )
                ]
                for name, examples in self.splits.items()
            }
        return self._evaluation_batches

    def evaluate_and_checkpoint(self) -> None:
        results = self.evaluate_all()
        metrics = {split: result.to_dict() for split, result in results.items()}
        if self.board is not None:
            self.board.evaluation(self.step, metrics, self.task.recorded_metrics)
        for split, result in results.items():
            for metric, value in metrics[split].items():
                self.eval_rows.append([self.step, split, metric, value])
            for kind in TALLIES:
                for key, (correct, total) in getattr(result, f"per_{kind}").items():
                    self.tally_rows[kind].append([self.step, split, key, correct, total])
        self._update_best(results)
        if self.config.eval.keep_weights:
            # before last.pt: a run killed in between evaluates this step again on resume
            self._save_weights(self.run.evaluation_weights(self.step))
        save_state(self.run.last, self._state(), self.hash)
        self._write_history()

    def _save_weights(self, path: Path) -> None:
        save_weights(path, self.model, {"step": str(self.step), "config_hash": self.hash})

    def _update_best(self, results: dict[str, EvalResult]) -> None:
        """Keep the best trained checkpoint by IND and by OOD (the task's metrics).

        The untrained model (step 0) stays in the history but is never a best checkpoint: a run
        whose OOD is 0 at every trained evaluation would otherwise report the untrained model's
        IND. Ties go to the later step, the longer-trained model.
        """
        if self.step == 0:
            return
        ind = getattr(results["val"], self.task.ind_metric)
        ood = getattr(results["ood"], self.task.ood_metric)
        point = {"step": self.step, "ind": ind, "ood": ood}
        for key, metric, path in (
            ("val", "ind", self.run.best_val),
            ("ood", "ood", self.run.best_ood),
        ):
            value = point[metric]
            if value is None or (key in self.best and value < self.best[key][metric]):
                continue
            self.best[key] = point
            self._save_weights(path)

    def _write_static_records(self) -> None:
        """config.json, and environment.json as of this segment; every segment's device,
        precision and backends stay in its ``segments``."""
        atomic_write_json(self.run.config, self.config.to_dict())
        segment = self.segments[-1]
        env = environment_record(segment["device"], segment["precision"], segment["backends"])
        env |= {"config_hash": self.hash, "segments": self.segments}
        if segment["backend_notes"]:
            env["backend_notes"] = segment["backend_notes"]
        atomic_write_json(self.run.environment, env)

    def _write_history(self) -> None:
        """eval.csv and the tallies, whole; train.csv grows a row at each log interval."""
        atomic_write_csv(self.run.eval_log, ["step", "split", "metric", "value"], self.eval_rows)
        for kind in TALLIES:
            atomic_write_csv(
                self.run.tally(kind),
                ["step", "split", kind, "correct", "total"],
                self.tally_rows[kind],
            )

    def plateaued(self) -> bool:
        """Whether the run's plateau rule (``eval.plateau_evals``) says stop now (`plateaued`)."""
        rule = self.config.eval
        if rule.plateau_evals is None:
            return False
        return plateaued(self.trained_history(), rule.plateau_evals, rule.plateau_tolerance)

    def trained_history(self) -> list[tuple[float | None, float | None]]:
        """(IND, OOD) of every trained evaluation (step > 0), in order."""
        rows = (
            dict(zip(("step", "split", "metric", "value"), row, strict=True))
            for row in self.eval_rows
        )
        return history_of(rows, self.task.recorded_metrics)

    def finish(self, status: str, reason: str = "", *, plateau: bool = False) -> TrainResult:
        """Write the run's final records. ``plateau``: it stopped on its plateau rule rather
        than at its cap (``optim.steps``); a run with the rule records which, and the step."""
        model = self.model
        final = {(row[1], row[2]): row[3] for row in self.eval_rows if row[0] == self._last_eval}
        summary = {
            "status": status,
            "reason": reason,
            "config_hash": self.hash,
            "task": self.config.task,
            "model": self.config.model,
            "model_options": self.config.model_options,
            "seed": self.config.seed,
            "steps": self.step,
            "wall_time_s": round(self.elapsed, 2),
            "parameters": parameter_count(model),
            "state_size": model.state_size() if hasattr(model, "state_size") else None,
            "final": {
                "step": self._last_eval,
                "ind": final.get(("val", self.task.ind_metric)),
                "ood": final.get(("ood", self.task.ood_metric)),
            },
            "best_val": self.best.get("val"),
            "best_ood": self.best.get("ood"),
            "metrics": self.task.recorded_metrics,
            "note": BEST_CHECKPOINT_NOTE,
        }
        if self.config.eval.plateau_evals is not None and status == "complete":
            summary["stop"] = {
                "reason": "plateau" if plateau else "cap",
                "step": self.step,
                # at the cap: whether it had plateaued there all the same, or was still improving
                "plateaued": plateau or self.plateaued(),
            }
        self._write_history()
        atomic_write_json(self.run.summary, summary)
        self.run.mark_complete(status)
        return TrainResult(self.run, status, summary)


class LoopHooks:
    """What `train_runs` lets a caller do around each run's records: nothing, for a run trained
    alone; `countlib.train.stacked` copies a run's slice of the stacked model back first."""

    def before_log(self, run: int) -> None:
        """Run ``run``'s log interval is about to be recorded."""

    def before_evaluation(self, run: int) -> None:
        """Run ``run`` is about to be evaluated and checkpointed."""

    def stopped(self, run: int) -> None:
        """Run ``run`` has just finished (diverged, or on its plateau rule); the others go on."""


def train_runs(
    runs: Sequence[Trainer],
    step: Callable[[], torch.Tensor],
    *,
    progress: bool = True,
    log_every: int = 50,
    hooks: LoopHooks | None = None,
) -> list[TrainResult]:
    """The training loop, for one run or K trained together: ``step()`` takes one optimizer
    step of every run and returns their losses [K], left on the device. The runs start at the
    same step with the same budget and evaluation interval; each logs, diverges (see `Trainer`),
    evaluates and checkpoints as its own record, and their results come in order.

    A step that overflows float range stops every run still training, as diverged. A run
    with a plateau rule (``eval.plateau_evals``) stops at the evaluation that meets it, also
    when it resumes from a checkpoint that already did.
    """
    hooks = hooks or LoopHooks()
    first = runs[0]
    total, every = first.config.optim.steps, first.config.eval.every
    alone = len(runs) == 1
    desc = first.run.path.name if alone else f"{len(runs)} stacked runs"
    bar = tqdm(total=total, initial=first.step, disable=not progress, desc=desc)
    results: dict[int, TrainResult] = {}
    loss_sum = torch.zeros(len(runs), device=first.placement.device)
    since_log = 0
    started = [time.perf_counter() - run.elapsed for run in runs]
    at = first.step
    for k, run in enumerate(runs):
        if 0 < at < total and run.plateaued():  # killed between an evaluation and its finish
            results[k] = run.finish("complete", plateau=True)
            hooks.stopped(k)
    while at < total and len(results) < len(runs):
        running = [k for k in range(len(runs)) if k not in results]
        try:
            loss_sum += step()
        except (RuntimeError, OverflowError) as err:
            if not _is_overflow(err):
                raise
            for k in running:
                results[k] = runs[k].stop_diverged(
                    started[k], f"float overflow in step {at + 1}: {err}"
                )
            break
        at += 1
        since_log += 1
        bar.update(1)
        for k in running:
            runs[k].step = at
        at_eval = at % every == 0 or at == total
        if at % log_every == 0 or at_eval:
            # each mean in double precision, from the sum read once
            means = [value / since_log for value in loss_sum.tolist()]
            loss_sum.zero_()
            since_log = 0
            for k in running:
                hooks.before_log(k)
                reason = runs[k].log_interval(means[k], time.perf_counter() - started[k])
                if reason is not None:
                    results[k] = runs[k].stop_diverged(started[k], reason)
                    hooks.stopped(k)
            if alone and not results:
                bar.set_postfix(first.postfix(means[0]))
        if at_eval:
            for k in running:
                if k in results:
                    continue
                runs[k].elapsed = time.perf_counter() - started[k]
                hooks.before_evaluation(k)
                runs[k].evaluate_and_checkpoint()
                if at < total and runs[k].plateaued():
                    results[k] = runs[k].finish("complete", plateau=True)
                    hooks.stopped(k)
            if alone and not results:
                bar.set_postfix(first.postfix(first.train_rows[-1][1]))
    bar.close()
    for k, run in enumerate(runs):
        if k not in results:
            results[k] = run.finish("complete")
    return [results[k] for k in range(len(runs))]


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """``threads`` intra-op threads while a run trains, the caller's count restored afterwards:
    the sequential executor trains in its caller's process."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _refuse_or_warn(
    change: str, exactly: str, option: str, allowed: bool, error: type[ValueError]
) -> None:
    """A resume that would change a run's numbers (``change``): ``error``, saying how to resume
    ``exactly`` and which ``option`` resumes anyway; with that option ``allowed``, a warning."""
    if not allowed:
        flag = option.replace("_", "-")
        raise error(
            f"{change}. {exactly}, or resume anyway with {option} (countlib train --{flag})"
        )
    warnings.warn(f"{change}; resuming anyway ({option})", RuntimeWarning, stacklevel=4)


def _device_rng(state: dict[str, Any], device: torch.device) -> torch.Tensor | None:
    """The saved rng state of the training GPU. Checkpoints before countlib 0.1's placement
    kept every visible GPU's (``cuda_rng``): the entry of the same index, where there is one."""
    saved = state.get("device_rng")
    if isinstance(saved, torch.Tensor):
        return saved
    every_gpu = state.get("cuda_rng") or []
    index = device.index or 0
    return every_gpu[index] if device.type == "cuda" and index < len(every_gpu) else None


def _is_overflow(err: Exception) -> bool:
    """A step that left float range: torch reports it as a RuntimeError that says so ("value
    cannot be converted to type float without overflow"); any other error is a bug to raise."""
    return isinstance(err, OverflowError) or "without overflow" in str(err)


def train(config: RunConfig, runs_dir: str | Path = "runs", **kwargs: Any) -> TrainResult:
    """Train (or resume, or skip if complete) the run of ``config`` under ``runs_dir``."""
    return Trainer(config, runs_dir, **kwargs).run_training()
