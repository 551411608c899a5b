import json

import pytest

from countlib.cli import main


def test_tasks_lists_names_aliases_and_lengths(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "shifted_start" in out and "counting_samesymbol_shiftedstart3" in out
    row = next(line for line in out.splitlines() if line.startswith("shifted_start "))
    assert "103" in row and "52-100" in row


def test_export_then_check_round_trip(tmp_path, capsys):
    out = tmp_path / "ood.txt"
    assert main(["data", "export", "mod10", "--split", "ood", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 50
    assert main(["data", "check", str(out), "--task", "counting_samesymbol_mod10"]) == 0
    train = tmp_path / "train.txt"
    assert (
        main(["data", "export", "mod10", "--split", "train", "--n", "7", "--out", str(train)]) == 0
    )
    assert len(train.read_text().splitlines()) == 7


def test_check_names_the_first_bad_line(tmp_path, capsys):
    path = tmp_path / "bad.txt"
    good = json.dumps([["a", "a"], ["1", "2"]])
    wrong_label = json.dumps([["a", "a", "a"], ["1", "2", "4"]])
    path.write_text("\n".join([good, good, wrong_label, "not json"]) + "\n")
    assert main(["data", "check", str(path), "--task", "mod10"]) == 1
    err = capsys.readouterr().err
    assert "bad.txt:3:" in err and "position 2" in err

    path.write_text(good + "\n" + "[1, 2\n")
    assert main(["data", "check", str(path), "--task", "mod10"]) == 1
    assert "bad.txt:2: not valid JSON" in capsys.readouterr().err


def test_unknown_task_is_a_clear_error(capsys):
    assert main(["data", "export", "mod100", "--out", "x.txt"]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'mod100'" in err and "shifted_start" in err


def test_unknown_split_names_the_choices(tmp_path, capsys):
    assert main(["data", "export", "mod10", "--split", "test", "--out", str(tmp_path / "x")]) == 2
    assert "choose from ['ood', 'val']" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["lstm"])
def test_train_and_eval_from_the_command_line(model, tmp_path, capsys):
    args = ["train", "--task", "mod10", "--model", model, "--hidden", "8", "--steps", "4",
            "--eval-every", "2", "--runs-dir", str(tmp_path), "--device", "cpu",
            "--quiet"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("complete: ") and "best_ood" in out
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("already complete: ")
    (run,) = tmp_path.iterdir()
    assert main(["eval", str(run), "--checkpoint", "best_val", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "ood: acc" in out and "extrapolation (OOD)" in out
    assert (run / "eval_best_val_splits.csv").exists()
