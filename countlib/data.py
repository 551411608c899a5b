"""Reading, writing and checking files in the original JSON-lines format."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from countlib.tasks.base import DataError, Example, Task


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


def iter_file(path: str | os.PathLike) -> Iterator[tuple[int, Example]]:
    """Yield (line number, example) for every non-empty line; bad lines raise DataFileError."""
    with open(path, encoding="utf-8") as fh:
        try:
            for number, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    yield number, parse_line(text)
                except DataError as err:
                    raise DataFileError(path, number, str(err)) from None
        except UnicodeDecodeError as err:
            # decoding runs a chunk of lines ahead of the loop: the line is unknown
            raise DataError(f"{path}: not UTF-8 text ({err.reason})") from None


def read_file(path: str | os.PathLike) -> list[Example]:
    return [example for _, example in iter_file(path)]


def format_example(example: Example) -> str:
    return json.dumps([list(example[0]), list(example[1])])


def write_file(path: str | os.PathLike, examples: Iterable[Example]) -> int:
    """Write examples atomically (a reader never sees a half-written file). Returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for example in examples:
                fh.write(format_example(example) + "\n")
                count += 1
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:
            # a failed write (a full disk) names no file: name the one being written
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    return count


def read_checked(path: str | os.PathLike, task: Task) -> list[Example]:
    """Read a file, validating every line against ``task``.

    Raises DataFileError naming the first bad line, and DataError for a file without examples
    (nothing to check or evaluate is a mistake, not a pass).
    """
    examples = []
    for number, example in iter_file(path):
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
