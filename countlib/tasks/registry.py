"""Name -> task registry. Every task is reachable by its readable name and its original aliases."""

from __future__ import annotations

import difflib

from countlib.tasks.base import Task

_TASKS: dict[str, Task] = {}
_BY_ALIAS: dict[str, str] = {}


class UnknownTaskError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def register(task: Task) -> Task:
    for key in (task.name, *task.aliases):
        owner = _BY_ALIAS.get(key)
        if owner is not None and owner != task.name:
            raise ValueError(f"task name {key!r} is already used by {owner!r}")
    _TASKS[task.name] = task
    for key in (task.name, *task.aliases):
        _BY_ALIAS[key] = task.name
    return task


def get_task(name: str) -> Task:
    try:
        return _TASKS[_BY_ALIAS[name]]
    except KeyError:
        close = difflib.get_close_matches(name, list(_BY_ALIAS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownTaskError(
            f"unknown task {name!r}.{hint} Valid tasks: {', '.join(sorted(_TASKS))} "
            "(run `countlib tasks` to see their original names too)"
        ) from None


def list_tasks() -> list[Task]:
    return [_TASKS[name] for name in sorted(_TASKS)]
