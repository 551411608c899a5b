"""The Ray executor: each unit of work a Ray task with one GPU, or one CPU, on a cluster or a
local instance. Ray is an optional dependency.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from countlib.config import RunConfig
from countlib.sweep.spec import SweepRun
from countlib.sweep.work import RunOutcome, _configs, _failed, run_group

RAY_INSTALL = "pip install ray (or: pip install 'ray[default]' for the dashboard)"


class ExecutorUnavailableError(ImportError):
    """The requested executor's optional dependency is missing; the message says how to add it."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise ExecutorUnavailableError(
            f"the ray executor needs the optional dependency ray: {RAY_INSTALL}"
        ) from err
    return ray


def _ray_task(configs: list[RunConfig], runs_dir: Path, device: str) -> list[RunOutcome]:
    # Ray sets CUDA_VISIBLE_DEVICES to the task's GPU
    return run_group(configs, runs_dir, device)


def _run_ray(
    units: list[list[SweepRun]],
    runs_dir: Path,
    device: str,
    workers: int | None,
    address: str | None,
    record: Callable[[RunOutcome], None],
) -> None:
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        starts_local = address is None and not os.environ.get("RAY_ADDRESS")
        # a new local instance takes its size from us; an existing cluster refuses such options
        local = {"include_dashboard": False, "num_cpus": workers} if starts_local else {}
        ray.init(address=address, **local)
    try:
        # the cluster, not this driver, decides whether "auto" means GPUs
        use_gpu = device.startswith("cuda") or (
            device == "auto" and ray.cluster_resources().get("GPU", 0) > 0
        )
        resources = {"num_cpus": 1, "num_gpus": 1 if use_gpu else 0}
        task = ray.remote(**resources)(_ray_task)
        run_device = "cuda" if use_gpu else "cpu"
        submitted = {task.remote(_configs(unit), runs_dir, run_device): unit for unit in units}
        waiting = list(submitted)
        try:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                unit = submitted[done[0]]
                try:
                    outcomes = ray.get(done[0])
                except Exception as err:  # the worker died: Ray's error holds the traceback
                    outcomes = _failed(unit, runs_dir, str(err))
                for outcome in outcomes:
                    record(outcome)
        except BaseException:
            # interrupted: a cluster would otherwise go on training runs nobody waits for
            for ref in waiting:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started_here:
            ray.shutdown()
