"""One training loop for every model family.

The loop draws batches on the fly from the task's seeded sampler, evaluates every
``eval.every`` steps on all of the task's splits, and checkpoints the full training state at
each evaluation so that a killed run resumes exactly where its last checkpoint left it.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from tqdm import tqdm  # tqdm.auto warns in notebooks without ipywidgets

from countlib.batches import Collator
from countlib.config import RunConfig
from countlib.metrics import EvalResult
from countlib.models import build_model, parameter_count
from countlib.tasks import Task, get_task
from countlib.train.checkpoint import load_state, save_state, save_weights
from countlib.train.evaluate import evaluate
from countlib.train.records import RunDir, atomic_write_csv, atomic_write_json, environment_record

BEST_BY_OOD_NOTE = (
    "best_ood selects the checkpoint on the OOD test split itself, as the paper's protocol does; "
    "best_val selects on the in-distribution validation split."
)


@dataclass
class TrainResult:
    run_dir: RunDir
    status: str
    summary: dict[str, Any]
    skipped: bool = False


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available here")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}; choose cpu, cuda or auto")
    return device


def resolve_precision(precision: str, device: str) -> str:
    """Accelerate's mixed-precision name. CPU trains in fp32: bf16 autocast is slow there."""
    if precision == "auto":
        return "bf16" if device.startswith("cuda") else "no"
    return {"fp32": "no"}.get(precision, precision)


def task_for(config: RunConfig) -> Task:
    task = get_task(config.task)
    if config.aux_share is not None and hasattr(task, "with_aux_share"):
        task = task.with_aux_share(config.aux_share)
    return task


class Trainer:
    def __init__(
        self,
        config: RunConfig,
        runs_dir: str | Path = "runs",
        *,
        device: str = "auto",
        progress: bool = True,
        log_every: int = 50,
    ) -> None:
        self.config = config.resolve()
        self.hash = config.config_hash()
        self.run = RunDir(Path(runs_dir) / self.config.run_name())
        self.device = resolve_device(device)
        self.progress = progress
        self.log_every = log_every
        self.task = task_for(self.config)
        self.accelerator = Accelerator(
            cpu=self.device == "cpu",
            mixed_precision=resolve_precision(self.config.precision, self.device),
        )
        self.collator = Collator(
            self.task,
            self.config.position_scheme,
            max_positions=self.config.model_options.get("max_positions"),
        )

    # -- set-up ------------------------------------------------------------------------------

    def _build(self) -> None:
        cfg = self.config
        # Here rather than in __init__: a completed run is skipped without generating its splits.
        self.splits = {name: self.task.split(name, seed=cfg.eval.seed) for name in self.task.splits}
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, len(self.task.vocab), **cfg.model_options)
        groups = model.param_groups(cfg.optim) if hasattr(model, "param_groups") else None
        optimizer = torch.optim.AdamW(
            groups or model.parameters(),
            lr=cfg.optim.lr,
            weight_decay=cfg.optim.weight_decay,
            betas=cfg.optim.betas,
        )
        warmup = cfg.optim.warmup_steps
        # Scheduler stays outside accelerate: it would step once per process and stretch warmup.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        process = self.accelerator.process_index
        self.data_rng = random.Random(f"data/{cfg.data_seed}/{process}")
        self.step = 0
        self.train_rows: list[list[Any]] = []
        self.eval_rows: list[list[Any]] = []
        self.position_rows: list[list[Any]] = []
        self.best: dict[str, dict[str, Any]] = {}
        self.elapsed = 0.0

    def _state(self) -> dict[str, Any]:
        scaler = self.accelerator.scaler
        return {
            "step": self.step,
            "model": self.accelerator.unwrap_model(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "data_rng": json.dumps(self.data_rng.getstate()),
            "history": json.dumps(
                {
                    "train": self.train_rows,
                    "eval": self.eval_rows,
                    "per_position": self.position_rows,
                    "best": self.best,
                    "elapsed": self.elapsed,
                }
            ),
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self.accelerator.unwrap_model(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.accelerator.scaler is not None and state["scaler"]:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        version, internal, gauss = json.loads(state["data_rng"])
        self.data_rng.setstate((version, tuple(internal), gauss))
        history = json.loads(state["history"])
        self.train_rows = history["train"]
        self.eval_rows = history["eval"]
        self.position_rows = history["per_position"]
        self.best = history["best"]
        self.elapsed = history["elapsed"]
        self.step = state["step"]

    # -- the loop ----------------------------------------------------------------------------

    def run_training(self) -> TrainResult:
        if self.run.is_complete():
            summary = self.run.read_summary()
            return TrainResult(self.run, summary["status"], summary, skipped=True)
        with self.run.lock():
            if self.run.is_complete():  # another process finished it while we waited
                return self.run_training()
            self._build()
            self._write_static_records()
            if self.run.last.exists():
                self._restore(load_state(self.run.last, self.hash))
            else:
                self._evaluate_and_checkpoint()
            return self._loop()

    def _loop(self) -> TrainResult:
        cfg = self.config
        total = cfg.optim.steps
        bar = tqdm(
            total=total, initial=self.step, disable=not self.progress, desc=self.run.path.name
        )
        loss_sum = torch.zeros((), device=self.accelerator.device)
        since_log = 0
        started = time.perf_counter() - self.elapsed
        self.model.train()
        while self.step < total:
            loss_sum += self._train_step()
            since_log += 1
            self.step += 1
            bar.update(1)
            at_eval = self.step % cfg.eval.every == 0 or self.step == total
            if self.step % self.log_every == 0 or at_eval:
                mean_loss = loss_sum.item() / since_log
                lr = self.scheduler.get_last_lr()[0]
                elapsed = round(time.perf_counter() - started, 3)
                self.train_rows.append([self.step, mean_loss, lr, elapsed])
                loss_sum.zero_()
                since_log = 0
                if not math.isfinite(mean_loss):
                    self.elapsed = time.perf_counter() - started
                    bar.close()
                    return self._finish("diverged", f"non-finite loss at step {self.step}")
                bar.set_postfix(self._postfix(mean_loss))
            if at_eval:
                self.elapsed = time.perf_counter() - started
                self._evaluate_and_checkpoint()
                bar.set_postfix(self._postfix(self.train_rows[-1][1]))
        bar.close()
        return self._finish("complete")

    def _train_step(self) -> torch.Tensor:
        examples = self.task.sample_batch(self.data_rng, self.config.optim.batch_size)
        batch = self.collator(examples, self.data_rng).to(self.accelerator.device)
        with self.accelerator.autocast():
            logits = self.model(
                batch.input_ids,
                position_ids=batch.position_ids,
                attention_mask=batch.attention_mask,
            )
        loss = F.cross_entropy(
            logits.float().flatten(0, 1), batch.labels.flatten(), ignore_index=-1
        )
        self.accelerator.backward(loss)
        if self.config.optim.grad_clip:
            self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def _postfix(self, loss: float) -> dict[str, str]:
        latest = {(row[1], row[2]): row[3] for row in self.eval_rows if row[0] == self._last_eval}

        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.3f}"

        return {
            "loss": f"{loss:.4f}",
            "ind": fmt(latest.get(("val", "acc"))),
            "ood": fmt(latest.get(("ood", "extrapolation_acc"))),
        }

    @property
    def _last_eval(self) -> int:
        return self.eval_rows[-1][0] if self.eval_rows else -1

    # -- evaluation and records --------------------------------------------------------------

    def evaluate_all(self) -> dict[str, EvalResult]:
        cfg = self.config.eval
        return {
            name: evaluate(
                self.model,
                self.task,
                examples,
                self.collator,
                batch_size=cfg.batch_size,
                shift_samples=cfg.shift_samples,
                seed=cfg.seed,
                device=self.accelerator.device,
                autocast=self.accelerator.autocast,
            )
            for name, examples in self.splits.items()
        }

    def _evaluate_and_checkpoint(self) -> None:
        results = self.evaluate_all()
        for split, result in results.items():
            for metric, value in result.to_dict().items():
                self.eval_rows.append([self.step, split, metric, value])
            for position, (correct, total) in result.per_position.items():
                self.position_rows.append([self.step, split, position, correct, total])
        self._update_best(results)
        if self.accelerator.is_main_process:
            save_state(self.run.last, self._state(), self.hash)
            self._write_history()

    def _update_best(self, results: dict[str, EvalResult]) -> None:
        ind = results["val"].acc
        ood = results["ood"].extrapolation_acc
        point = {"step": self.step, "ind": ind, "ood": ood}
        for key, metric, path in (
            ("val", "ind", self.run.best_val),
            ("ood", "ood", self.run.best_ood),
        ):
            value = point[metric]
            if value is None or (key in self.best and value <= self.best[key][metric]):
                continue
            self.best[key] = point
            if self.accelerator.is_main_process:
                model = self.accelerator.unwrap_model(self.model)
                save_weights(path, model, {"step": str(self.step), "config_hash": self.hash})

    def _write_static_records(self) -> None:
        if not self.accelerator.is_main_process:
            return
        atomic_write_json(self.run.config, self.config.to_dict())
        model = self.accelerator.unwrap_model(self.model)
        backends = model.backends() if hasattr(model, "backends") else {}
        env = environment_record(self.device, self.accelerator.mixed_precision, backends) | {
            "config_hash": self.hash
        }
        atomic_write_json(self.run.environment, env)

    def _write_history(self) -> None:
        atomic_write_csv(self.run.train_log, ["step", "loss", "lr", "elapsed_s"], self.train_rows)
        atomic_write_csv(self.run.eval_log, ["step", "split", "metric", "value"], self.eval_rows)
        atomic_write_csv(
            self.run.per_position,
            ["step", "split", "position", "correct", "total"],
            self.position_rows,
        )

    def _finish(self, status: str, reason: str = "") -> TrainResult:
        model = self.accelerator.unwrap_model(self.model)
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
                "ind": final.get(("val", "acc")),
                "ood": final.get(("ood", "extrapolation_acc")),
            },
            "best_val": self.best.get("val"),
            "best_ood": self.best.get("ood"),
            "note": BEST_BY_OOD_NOTE,
        }
        if self.accelerator.is_main_process:
            self._write_history()
            atomic_write_json(self.run.summary, summary)
            self.run.mark_complete(status)
        return TrainResult(self.run, status, summary)


def train(config: RunConfig, runs_dir: str | Path = "runs", **kwargs: Any) -> TrainResult:
    """Train (or resume, or skip if complete) the run of ``config`` under ``runs_dir``."""
    return Trainer(config, runs_dir, **kwargs).run_training()
