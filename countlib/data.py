"""Reading, writing and checking files in the original JSON-lines format.

Reading is bounded before it starts: a line longer than any example of the task could be
(`longest_line`), or a file beyond `MAX_FILE_CHARS`, is an error naming the line, so that
``countlib data check /dev/zero`` ends at once instead of reading without end.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from countlib.tasks.base import UNSUPERVISED, DataError, Example, Task
from countlib.train.records import atomic_file

#: The most lines `countlib data export` writes (``--n``).
MAX_EXPORT_LINES = 10**7
#: The most characters a data file may hold: more than the longest export (10^7 lines of 100
#: tokens take about 10 GB), yet a stream without end stops.
MAX_FILE_CHARS = 16 * 2**30


class DataFileError(DataError):
    """A problem with a data file, naming the file and the 1-based line."""

    def __init__(self, path: str | os.PathLike, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


def parse_line(text: str) -> Example:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"not valid JSON ({err.msg})") from None
    except RecursionError:
        # json's decoder recurses once per nesting level; an example is only two levels deep
        raise DataError("not valid JSON (nested too deeply)") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(part, list) for part in value)
    ):
        raise DataError("expected a JSON array [inputs, labels] of two arrays")
    inputs, labels = value
    if not all(isinstance(tok, str) for tok in inputs + labels):
        raise DataError("every input and label must be a string")
    return inputs, labels


def longest_line(task: Task) -> int:
    """The most characters a line of a ``task`` file may hold: twice the line of an example of
    ``max_seq_len`` tokens, each the longest the task knows, as `format_example` writes it
    (twice: room for other spacing). A longer line is no example of the task."""
    widest = max([*task.vocab.tokens, UNSUPERVISED], key=len)
    tokens = [widest] * task.max_seq_len
    return 2 * len(format_example((tokens, tokens)))


def iter_file(path: str | os.PathLike, max_line: int) -> Iterator[tuple[int, Example]]:
    """Yield (line number, example) for every non-empty line; bad lines raise DataFileError,
    as does a line longer than ``max_line`` characters or a file beyond `MAX_FILE_CHARS`."""
    with open(path, encoding="utf-8") as fh:
        try:
            for number, text in _bounded_lines(path, fh, max_line):
                if not text.strip():
                    continue
                try:
                    yield number, parse_line(text)
                except DataError as err:
                    raise DataFileError(path, number, str(err)) from None
        except UnicodeDecodeError as err:
            # decoding runs a chunk of lines ahead of the loop: the line is unknown
            raise DataError(f"{path}: not UTF-8 text ({err.reason})") from None


def _bounded_lines(
    path: str | os.PathLike, fh: IO[str], max_line: int
) -> Iterator[tuple[int, str]]:
    """The lines of ``fh``, numbered from 1, each read with a limit, never whole."""
    total, number = 0, 0
    while text := fh.readline(max_line + 1):
        number += 1
        total += len(text)
        if len(text) > max_line:
            raise DataFileError(
                path, number, f"longer than {max_line:,} characters, more than any example holds"
            )
        if total > MAX_FILE_CHARS:
            raise DataFileError(path, number, f"the file exceeds {MAX_FILE_CHARS:,} characters")
        yield number, text


def format_example(example: Example) -> str:
    return json.dumps([list(example[0]), list(example[1])])


#: ``--out`` for standard output.
STDOUT = "-"


def write_file(path: str | os.PathLike, examples: Iterable[Example]) -> int:
    """Write examples atomically (a reader never sees a half-written file), or to standard
    output for `STDOUT`. Returns the count."""
    if str(path) == STDOUT:
        return _write_lines(sys.stdout, examples)
    path = Path(path)
    if path.exists() and not stat.S_ISREG(path.stat().st_mode):
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise ValueError(f"{path} is {kind}: name a file to write (or {STDOUT}, standard output)")
    with atomic_file(path) as fh:
        return _write_lines(fh, examples)


def _write_lines(fh: IO[str], examples: Iterable[Example]) -> int:
    count = 0
    for example in examples:
        fh.write(format_example(example) + "\n")
        count += 1
    return count


def read_checked(path: str | os.PathLike, task: Task) -> list[Example]:
    """Read a file, validating every line against ``task``.

    Raises DataFileError naming the first bad line, and DataError for a file without examples
    (nothing to check or evaluate is a mistake, not a pass).
    """
    examples = []
    for number, example in iter_file(path, longest_line(task)):
        try:
            task.check(example)
        except DataError as err:
            raise DataFileError(path, number, str(err)) from None
        examples.append(example)
    if not examples:
        raise DataError(f"{path}: no examples (the file has no non-empty line)")
    return examples


def check_file(path: str | os.PathLike, task: Task) -> int:
    """Validate every line against ``task``; returns the number of lines checked."""
    return len(read_checked(path, task))
