"""The README's verdict line is checked against the book's (issue 26, item 4)."""

from pathlib import Path

from countlib import claims
from countlib.claims import FAILS, HOLDS, UNDECIDED, Finding, Outcome
from countlib.verdicts import stated_line, verdict_line


def finding(key: str, verdict: str) -> Finding:
    claim = next(c for c in claims.ALL_CLAIMS if c.key == key)
    return Finding(claim, Outcome(verdict))


def test_the_line_lists_decided_claims_in_the_papers_order():
    found = [finding("21", FAILS), finding("10", HOLDS), finding("24 S4", HOLDS),
             finding("8", FAILS), finding("3", UNDECIDED)]  # fmt: skip
    assert verdict_line(found) == "holds 10, 24 S4; does not hold 8, 21"
    assert verdict_line([finding("3", UNDECIDED)]) == "none decided"


def test_the_readme_line_is_found_by_profile():
    text = (
        "Verdicts of `smoke` on a fresh clone: holds 10, 24 S4; does not hold 8, 21.\n"
        "Verdicts of `laptop` on a fresh clone: none decided.\n"
    )
    assert stated_line(text, "smoke") == "holds 10, 24 S4; does not hold 8, 21"
    assert stated_line(text, "laptop") == "none decided"
    assert stated_line(text, "paper") is None


def test_ci_runs_the_readme_test_command_which_checks_the_main_jobs_verdicts():
    """CI calls exactly the README's test command, and that command builds the smoke book from
    the clone and fails when the README's line for it differs from the Findings it built."""
    root = Path(__file__).parents[1]
    readme = (root / "README.md").read_text()
    block = readme.split("# tests, then the main job's verdicts", 1)[1].splitlines()[1]
    ci = [line for line in (root / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert ci[-1] == block
    assert "countlib book --profile smoke" in block
    assert block.endswith("python -m countlib.verdicts --profile smoke")
    assert stated_line(readme, "smoke") is not None
