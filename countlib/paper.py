"""The paper's experiments, one declarative object per table: what to train and how to show it.

Each `PaperTable` holds its grid entries at the paper's scale (protocol.md; sweep-spec entries,
see `countlib.sweep`) and its layout: rows and columns as filters on the run table of
`countlib.results.load_runs`, the seed statistic (best or median of the seeds), and the table
whose runs it reports when it trains none of its own (A2 and A3 show Tables 2 and A1 under the
median). The profiles (`countlib.profiles`), the book's chapters and its table of contents
(`countlib.book`) all follow from `PAPER_TABLES`: adding a table is one edit here.

The paper's constants (its tasks, PEs, depths, seeds) are written here once. This module imports
neither torch nor the rest of countlib, so that reading runs stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Filter = dict[str, Any]

#: The five seeds of the original experiments.
PAPER_SEEDS = (1234, 12, 123, 42, 319)
#: The budgets of the GPU profiles (`countlib.profiles`): the paper's, and ``paper-lite``'s
#: first look at the whole grid. A cell still improving at a smaller cap is trained longer by
#: the first of them above it.
LONGER_BUDGETS = (("paper-lite", 10_000), ("paper", 312_500))
#: The paper's positional embeddings: (label, countlib's ``pe`` option).
PES = (("NoPE", "nope"), ("SinePE", "sine"), ("APE", "ape"), ("RoPE", "rope"), ("SPE", "spe"))
PAPER_PES = [pe for _, pe in PES]
#: Paper tasks 2-8 (Figure 1), in order: (label, countlib task name). Table 2's rows.
TASKS = (
    ("Vanilla + Succession", "vanilla_succession"),
    ("Helper Token", "helper_token"),
    ("Helper Token + Shifted Start", "helper_token_shifted_start"),
    ("Shifted Start", "shifted_start"),
    ("Modular (mod 10)", "mod10"),
    ("Selective", "selective"),
    ("Selective + Modular (mod 4)", "selective_mod4"),
)
PAPER_TASKS = [task for _, task in TASKS]
#: Table A1's rows: tasks 3-8.
RECURRENT_TASKS = PAPER_TASKS[1:]
#: Table A1's columns: (label, countlib model family).
RECURRENT = (
    ("RNN", "rnn"),
    ("LSTM", "lstm"),
    ("S4", "s4"),
    ("Mamba", "mamba"),
    ("RWKV-6", "rwkv6"),
)
#: The model option of Grazzi et al. (ICLR 2025, arXiv 2411.12537): transitions in [-1, 1]
#: instead of [0, 1] (Mamba, Mamba-2; DeltaNet's beta in [0, 2]).
NEGATIVE = "negative_eigenvalues"
#: The families with that option: (label, countlib model family).
NEGATIVE_FAMILIES = (
    ("Mamba", "mamba"),
    ("Mamba-2", "mamba2"),
    ("DeltaNet", "deltanet"),
    ("Gated DeltaNet", "gated_deltanet"),
)
#: The column label of a family with transitions in [-1, 1].
NEGATIVE_LABEL = "{}, [-1, 1]"
#: Parallel-scan gated RNNs without the option (Feng et al. 2024), and the nonlinear sLSTM
#: (Beck et al. 2024): the two ends of "parallel but gated" and "recurrent and nonlinear".
GATED_FAMILIES = (("minGRU", "mingru"), ("minLSTM", "minlstm"))
NONLINEAR_FAMILIES = (("sLSTM", "slstm"),)
DEPTHS = [1, 2, 4]
#: The paper's Transformer: d = 1024, 8 heads (protocol.md).
PAPER_TRANSFORMER = {"model": "transformer", "hidden": 1024, "heads": 8}
#: Table A8: train / OOD maximum lengths -> task.
RATIO_TASKS = (
    ("25 / 50", "shifted_start_tr25_te50"),
    ("50 / 100", "shifted_start_tr50_te100"),
    ("25 / 100", "shifted_start_tr25_te100"),
    ("50 / 200", "shifted_start_tr50_te200"),
    ("25 / 200", "shifted_start_tr25_te200"),
)
#: Tables A5/A6: 1 layer, 1 head, d = 32 and 4; tiny already at the paper's size.
PROBE = {"model": "transformer", "layers": 1, "heads": 1, "hidden": [32, 4]}


@dataclass(frozen=True)
class PaperTable:
    """One table of the paper: its grid at the paper's scale and its layout."""

    key: str  # as the paper numbers it: "2", "A1" ... "A8"; countlib's own: "H1", "H2"
    title: str
    rows: list[tuple[str, Filter]]
    columns: list[tuple[str, Filter]]
    #: Sweep-grid entries (no ``table`` tag: the profile adds it) at the paper's scale.
    grid: list[dict[str, Any]] = field(default_factory=list)
    statistic: str = "best"  # "best" or "median" of the seeds
    #: The table whose runs this one reports (A2 reports Table 2's), if it trains none.
    same_runs_as: str | None = None
    note: str = ""
    #: countlib's own tables (not the paper's): the question they put, stated above them, and
    #: the paper table whose printed values their shared cells show (the LSTM, Mamba, RWKV-6).
    question: str = ""
    paper_values_of: str | None = None

    def __post_init__(self) -> None:
        if self.statistic not in ("best", "median"):
            raise ValueError(f"table {self.key}: statistic must be best or median")

    @property
    def page(self) -> str:
        """The book page of this table."""
        return f"table_{self.key}"

    @property
    def paper_key(self) -> str:
        """The paper table whose printed values the cells show beside countlib's."""
        return self.paper_values_of or self.key

    @property
    def runs_of(self) -> str:
        """The key of the table whose runs fill this one (its own, or ``same_runs_as``)."""
        return self.same_runs_as or self.key


def _task_rows(tasks, layers=DEPTHS) -> list[tuple[str, Filter]]:
    return [
        (f"{label}, {n}L", {"task": task, "layers": n}) for label, task in tasks for n in layers
    ]


def _pe_columns(pes=PAPER_PES) -> list[tuple[str, Filter]]:
    return [(label, {"model": "transformer", "pe": pe}) for label, pe in PES if pe in pes]


def _recurrent_column(model: str, negative: bool = False) -> Filter:
    """A recurrent family's column filter; a family with the option of Grazzi et al. names its
    value, so that a [0, 1] column never mixes in runs with transitions in [-1, 1]."""
    option = {NEGATIVE: negative} if model in dict(NEGATIVE_FAMILIES).values() else {}
    return {"model": model, **option}


_RECURRENT_COLUMNS = [(label, _recurrent_column(model)) for label, model in RECURRENT]
_A1_SHAPE = {"task": RECURRENT_TASKS, "layers": DEPTHS, "hidden": 128}
_ORIGINAL_RNN = {"dropout": 0.1, "lr": 1e-2, "weight_decay": 0.01}
#: Mamba names its transition range: a column filter reads it (`_recurrent_column`), and the
#: option at its [0, 1] default leaves the config hash, and so the run names, as they were.
_MAMBA = {**_A1_SHAPE, "model": "mamba", "lr": 1e-4, "weight_decay": 0.0, NEGATIVE: False}
_RWKV6 = {**_A1_SHAPE, "model": "rwkv6", "dropout": 0.1, "lr": 1e-4, "weight_decay": 0.0}
#: Table A1's grid. The paper searched each family's hyper-parameters (lr {5e-5, 1e-4, 1e-3,
#: 1e-2}, weight decay {0, 0.01, 0.001}, hidden {32, 128, 1024}, dropout {0, 0.1}) and never
#: published the winners; these are the original code's defaults, all inside that space
#: (seed-spec 2.2-2.4, 3.3-3.5).
_RECURRENT_GRID = [{**_A1_SHAPE, "model": ["rnn", "lstm", "s4"], **_ORIGINAL_RNN}, _MAMBA, _RWKV6]
#: The hypothesis tables' columns: the LSTM, the later families, Mamba and RWKV-6, each family
#: with the option of Grazzi et al. in a second column.
_HYPOTHESIS_COLUMNS = [
    ("LSTM", _recurrent_column("lstm")),
    *((label, _recurrent_column(model)) for label, model in NONLINEAR_FAMILIES + GATED_FAMILIES),
    *(
        column
        for label, model in NEGATIVE_FAMILIES
        for column in (
            (label, _recurrent_column(model)),
            (NEGATIVE_LABEL.format(label), _recurrent_column(model, negative=True)),
        )
    ),
    ("RWKV-6", _recurrent_column("rwkv6")),
]
#: Their grid at Table A1's size: the LSTM, Mamba and RWKV-6 are Table A1's own runs (the same
#: configurations, so a sweep trains them once); Mamba with transitions in [-1, 1] keeps Mamba's
#: settings; the later families, not in the paper, train at their CPU default lr (1e-3, inside
#: the paper's search space) without weight decay or dropout.
_LATER = {**_A1_SHAPE, "lr": 1e-3, "weight_decay": 0.0}
_HYPOTHESIS_GRID = [
    {**_A1_SHAPE, "model": "lstm", **_ORIGINAL_RNN},
    _MAMBA,
    {**_MAMBA, NEGATIVE: True},
    _RWKV6,
    {**_LATER, "model": [m for _, m in NEGATIVE_FAMILIES if m != "mamba"], NEGATIVE: [False, True]},
    {**_LATER, "model": [m for _, m in GATED_FAMILIES + NONLINEAR_FAMILIES]},
]
#: The question the hypothesis tables put, stated above them.
HYPOTHESIS_QUESTION = (
    "The paper explains why S4, Mamba and RWKV-6 fail to count where a 1-layer LSTM succeeds: "
    "they gave up nonlinear, input-dependent state transitions for parallel training. Later "
    "theory sharpens it: a linear RNN whose transition eigenvalues lie in [0, 1] (Mamba, RWKV, "
    "DeltaNet) cannot do parity and struggles with modular counting, and eigenvalues in [-1, 1] "
    "restore both (Grazzi et al., ICLR 2025, arXiv 2411.12537). So: does the negative-eigenvalue "
    "option let Mamba, Mamba-2, DeltaNet and Gated DeltaNet count mod 10 and Selective + mod 4 "
    "beyond the training lengths, and does it cost anything on Shifted Start? Do the "
    "parallel-scan gated RNNs minGRU and minLSTM fail as the paper's account predicts, and does "
    "the nonlinear sLSTM count like the LSTM?"
)

_BOS_TASKS = (
    ("Vanilla + Succession", "vanilla_succession"),
    ("Vanilla + Succession, BOS", "vanilla_succession_bos"),
    ("Modular (mod 10)", "mod10"),
    ("Modular (mod 10), BOS", "mod10_bos"),
)
_SELECTIVE_BOS = (("Selective", "selective"), ("Selective, BOS", "selective_bos"))

PAPER_TABLES: tuple[PaperTable, ...] = (
    PaperTable(
        "2",
        "Table 2: Transformers, best of seeds",
        _task_rows(TASKS),
        _pe_columns(),
        grid=[{"task": PAPER_TASKS, **PAPER_TRANSFORMER, "pe": PAPER_PES, "layers": DEPTHS}],
    ),
    PaperTable(
        "A2",
        "Table A2: Transformers, median of seeds",
        _task_rows(TASKS),
        _pe_columns(),
        statistic="median",
        same_runs_as="2",
    ),
    PaperTable(
        "A1",
        "Table A1: recurrent models, best of seeds",
        _task_rows(TASKS[1:]),
        _RECURRENT_COLUMNS,
        grid=_RECURRENT_GRID,
    ),
    PaperTable(
        "A3",
        "Table A3: recurrent models, median of seeds",
        _task_rows(TASKS[1:]),
        _RECURRENT_COLUMNS,
        statistic="median",
        same_runs_as="A1",
    ),
    PaperTable(
        "A4",
        "Table A4: NoPE and RoPE without and with BOS",
        _task_rows(_BOS_TASKS),
        _pe_columns(["nope", "rope"]),
        grid=[
            {
                "task": [task for _, task in _BOS_TASKS],
                **PAPER_TRANSFORMER,
                "pe": ["nope", "rope"],
                "layers": DEPTHS,
            }
        ],
    ),
    PaperTable(
        "A5",
        "Table A5: first-token recognition (homogeneous), 1 layer, 1 head",
        [(f"d = {d}", {"task": "first_token_homogeneous", "hidden": d}) for d in (32, 4)],
        _pe_columns(),
        grid=[{"task": "first_token_homogeneous", **PROBE, "pe": PAPER_PES}],
        note="accuracy of the first token's T/F prediction only, IND at length 50 and OOD at 128",
    ),
    PaperTable(
        "A6",
        "Table A6: first-token recognition (heterogeneous), NoPE, 1 layer, 1 head",
        [(f"d = {d}", {"task": "first_token_heterogeneous", "hidden": d}) for d in (32, 4)],
        [
            ("with causal mask", {"model": "transformer", "pe": "nope", "causal": True}),
            ("without causal mask", {"model": "transformer", "pe": "nope", "causal": False}),
        ],
        grid=[
            {"task": "first_token_heterogeneous", **PROBE, "pe": "nope", "causal": [True, False]}
        ],
        note="accuracy of the first token's T/F prediction only, IND at length 50 and OOD at 128",
    ),
    PaperTable(
        "A7",
        "Table A7: Selective without and with BOS",
        _task_rows(_SELECTIVE_BOS, (1, 2)),
        _pe_columns(),
        grid=[
            {
                "task": [task for _, task in _SELECTIVE_BOS],
                **PAPER_TRANSFORMER,
                "pe": PAPER_PES,
                "layers": [1, 2],
            }
        ],
        note="the BOS variant follows the original's v1 recipe (variable lengths 1-50), so it "
        "also changes the length distribution",
    ),
    PaperTable(
        "A8",
        "Table A8: RoPE, 4 layers, Shifted Start with other train / OOD lengths",
        [("RoPE 4L", {"model": "transformer", "pe": "rope", "layers": 4})],
        [(label, {"task": task}) for label, task in RATIO_TASKS],
        grid=[
            {
                "task": [task for _, task in RATIO_TASKS],
                **PAPER_TRANSFORMER,
                "pe": "rope",
                "layers": 4,
            }
        ],
    ),
)


#: countlib's own tables, beyond the paper: the hypothesis of issue 15 on Table A1's tasks.
HYPOTHESIS_TABLES: tuple[PaperTable, ...] = (
    PaperTable(
        "H1",
        "Table H1 (countlib's own): gated, nonlinear and negative-eigenvalue recurrences, best "
        "of seeds",
        _task_rows(TASKS[1:]),
        _HYPOTHESIS_COLUMNS,
        grid=_HYPOTHESIS_GRID,
        question=HYPOTHESIS_QUESTION,
        paper_values_of="A1",
    ),
    PaperTable(
        "H2",
        "Table H2 (countlib's own): gated, nonlinear and negative-eigenvalue recurrences, median "
        "of seeds",
        _task_rows(TASKS[1:]),
        _HYPOTHESIS_COLUMNS,
        statistic="median",
        same_runs_as="H1",
        question=HYPOTHESIS_QUESTION,
        paper_values_of="A3",
    ),
)
#: Every table countlib trains and shows: the paper's, then its own.
TABLES: tuple[PaperTable, ...] = PAPER_TABLES + HYPOTHESIS_TABLES


def get_table(name: str) -> PaperTable:
    """A table by its number ("2", "A1" ... "A8" as the paper prints them, "Table A1"; countlib's
    own "H1", "H2")."""
    specs = {table.key: table for table in TABLES}
    key = str(name).upper().removeprefix("TABLE").strip().removeprefix("_")
    if key not in specs:
        raise ValueError(f"unknown table {name!r}; choose from {', '.join(specs)}")
    return specs[key]
