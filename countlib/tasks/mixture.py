"""Main task plus auxiliary tasks, drawn with explicit probabilities.

The original concatenated training files and let file sizes set the mix; here the auxiliary
share is a parameter whose default is that original proportion.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from countlib.tasks.base import DataError, Example, SplitInfo, Task
from countlib.vocab import Vocab


class Mixture(Task):
    def __init__(
        self,
        name: str,
        main: Task,
        auxiliaries: Sequence[tuple[Task, float]],
        *,
        vocab: Vocab | None = None,
        aliases: tuple[str, ...] = (),
        description: str = "",
    ) -> None:
        total_aux = sum(share for _, share in auxiliaries)
        if not 0 <= total_aux < 1:
            raise ValueError(f"auxiliary shares must sum to [0, 1), got {total_aux}")
        self.name = name
        self.aliases = aliases
        self.main = main
        self.auxiliaries = tuple(auxiliaries)
        self.vocab = vocab or main.vocab
        self.description = description or main.description
        self.max_train_length = main.max_train_length
        self.max_positions = max(t.max_positions for t in self.components)
        self.max_seq_len = max(t.max_seq_len for t in self.components)
        self.train_lengths = main.train_lengths
        self.frozen_tokens = tuple(tok for t in self.components for tok in t.frozen_tokens)
        self.splits = dict(main.splits)
        for aux, _ in self.auxiliaries:
            self.splits[aux.test_split_name] = aux.splits["test"]
        self._weights = [1 - total_aux, *(share for _, share in self.auxiliaries)]
        for task in self.components:
            missing = [tok for tok in task.vocab.tokens if tok not in self.vocab]
            if missing:
                raise ValueError(f"{name}: tokens {missing} of {task.name} missing from vocab")

    @property
    def components(self) -> tuple[Task, ...]:
        return (self.main, *(aux for aux, _ in self.auxiliaries))

    @property
    def aux_share(self) -> float:
        return 1 - self._weights[0]

    def with_aux_share(self, share: float) -> Mixture:
        """The same mixture with the auxiliary share rescaled to ``share`` in total."""
        scale = share / self.aux_share if self.aux_share else 0.0
        return Mixture(
            self.name,
            self.main,
            [(aux, w * scale) for aux, w in self.auxiliaries],
            vocab=self.vocab,
            aliases=self.aliases,
            description=self.description,
        )

    def sample(self, rng: random.Random) -> Example:
        (task,) = rng.choices(self.components, weights=self._weights)
        return task.sample(rng)

    def labels(self, inputs: Sequence[str]) -> list[str | None]:
        errors = []
        for task in self.components:
            try:
                return task.labels(inputs)
            except DataError as err:
                errors.append(f"{task.name}: {err}")
        raise DataError("matches no component: " + "; ".join(errors))

    def check(self, example: Example) -> None:
        errors = []
        for task in self.components:
            try:
                task.check(example)
                return
            except DataError as err:
                errors.append(f"as {task.name}: {err}")
        raise DataError("; ".join(errors))

    def _build_split(self, split: str, rng: random.Random) -> list[Example]:
        for aux, _ in self.auxiliaries:
            if split == aux.test_split_name:
                return aux._build_split("test", rng)
        return self.main._build_split(split, rng)

    def summary(self) -> dict[str, object]:
        return {**super().summary(), "aux_share": round(self.aux_share, 4)}


def auxiliary_split_info(lines: int, lengths: tuple[int, int]) -> dict[str, SplitInfo]:
    """Auxiliary tasks have one released test set, fully determined by its recipe."""
    return {"test": SplitInfo(lines, lengths, deterministic=True)}
