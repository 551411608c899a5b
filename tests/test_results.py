import json

import pytest

from countlib.results import aggregate, load_runs
from countlib.train.records import RunDir


def fake_run(root, name, seed, best_ood, best_val, status="complete", layers=1, task="mod10"):
    """A hand-made run record; its config hash is ``hash-<name>``."""
    run = RunDir(root / name)
    run.path.mkdir(parents=True)
    config = {
        "task": task,
        "model": "lstm",
        "seed": seed,
        "optim": {"lr": 0.005, "steps": 100},
        "position_scheme": "none",
        "model_options": {"layers": layers, "hidden": 32},
    }
    run.config.write_text(json.dumps(config))
    if status == "incomplete":
        return
    run.summary.write_text(
        json.dumps(
            {
                "status": status,
                "config_hash": f"hash-{name}",
                "steps": 100,
                "wall_time_s": 1.0,
                "parameters": 10,
                "state_size": 64,
                "final": {"step": 100, "ind": best_val[0], "ood": best_val[1]},
                "best_val": {"step": 50, "ind": best_val[0], "ood": best_val[1]},
                "best_ood": {"step": 80, "ind": best_ood[0], "ood": best_ood[1]},
            }
        )
    )


def test_best_and_median_of_seeds(tmp_path):
    fake_run(tmp_path, "a", 1, best_ood=(1.0, 0.50), best_val=(1.0, 0.40))
    fake_run(tmp_path, "b", 2, best_ood=(0.9, 0.97), best_val=(1.0, 0.10))
    fake_run(tmp_path, "c", 3, best_ood=(0.8, 0.20), best_val=(0.95, 0.20))
    fake_run(tmp_path, "d", 4, best_ood=(0.2, 0.0), best_val=(0.2, 0.0), layers=2)
    fake_run(tmp_path, "e", 5, best_ood=(0, 0), best_val=(0, 0), status="incomplete")
    runs = load_runs(tmp_path)
    assert len(runs) == 5
    table = aggregate(runs, by=["task", "model", "layers"], rule="best_ood")
    one = table[table["layers"] == 1].iloc[0]
    assert one["seeds"] == 3
    # Best-of-k takes the seed with the highest OOD and reports its IND beside it.
    assert (one["best_ood"], one["best_ind"]) == (0.97, 0.9)
    assert one["median_ood"] == pytest.approx(0.5) and one["median_ind"] == pytest.approx(0.9)
    assert one["incomplete"] == 1
    by_val = aggregate(runs, by=["task", "model", "layers"], rule="best_val")
    one_val = by_val[by_val["layers"] == 1].iloc[0]
    assert one_val["best_ood"] == 0.4 and one_val["median_ood"] == pytest.approx(0.2)


def test_unknown_rule_is_an_error(tmp_path):
    fake_run(tmp_path, "a", 1, best_ood=(1, 1), best_val=(1, 1))
    with pytest.raises(ValueError, match="best_ood"):
        aggregate(load_runs(tmp_path), rule="best_test")


def test_diverged_runs_are_counted(tmp_path):
    fake_run(tmp_path, "a", 1, best_ood=(1.0, 0.5), best_val=(1.0, 0.5))
    fake_run(tmp_path, "b", 2, best_ood=(0.1, 0.0), best_val=(0.1, 0.0), status="diverged")
    row = aggregate(load_runs(tmp_path), by=["task"]).iloc[0]
    assert row["diverged"] == 1 and row["seeds"] == 2


def _with_history(run: RunDir, ind: list[float], ood: list[float], every: int = 100) -> None:
    """Give a fake run an evaluation history (step 0 untrained, then one row per split)."""
    summary = json.loads(run.summary.read_text()) | {
        "metrics": {"ind": "val/acc", "ood": "ood/extrapolation_acc"}
    }
    run.summary.write_text(json.dumps(summary))
    rows = ["step,split,metric,value", "0,val,acc,0.0", "0,ood,extrapolation_acc,0.0"]
    for k, (i, o) in enumerate(zip(ind, ood, strict=True), start=1):
        rows += [f"{k * every},val,acc,{i}", f"{k * every},ood,extrapolation_acc,{o}"]
    run.eval_log.write_text("\n".join(rows) + "\n")


def test_each_run_says_why_it_stopped_and_whether_it_was_still_improving(tmp_path):
    for name in ("rule", "flat", "rising", "short"):
        fake_run(tmp_path, name, 1, best_ood=(1.0, 0.3), best_val=(1.0, 0.3))
    ruled = RunDir(tmp_path / "rule")
    summary = json.loads(ruled.summary.read_text())
    stop = {"reason": "cap", "step": 100, "plateaued": False}
    ruled.summary.write_text(json.dumps(summary | {"stop": stop}))
    # without a rule of their own, runs are judged on their evaluations by the profiles' rule
    # (3 evaluations, 1 point): OOD rising 2 points within the last three is still improving
    _with_history(RunDir(tmp_path / "flat"), [0.5, 1.0, 1.0, 1.0, 1.0], [0.1, 0.3, 0.3, 0.305, 0.3])
    _with_history(
        RunDir(tmp_path / "rising"), [0.5, 1.0, 1.0, 1.0, 1.0], [0.1, 0.3, 0.3, 0.3, 0.32]
    )
    _with_history(RunDir(tmp_path / "short"), [1.0, 1.0, 1.0], [0.3, 0.3, 0.3])  # too few
    runs = load_runs(tmp_path).set_index("run")
    assert runs.loc["rule", "stop_reason"] == "cap" and not runs.loc["rule", "plateaued"]
    assert runs.loc["flat", "stop_reason"] == "steps" and runs.loc["flat", "plateaued"]
    assert not runs.loc["rising", "plateaued"] and not runs.loc["short", "plateaued"]
