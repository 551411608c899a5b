"""Every counting task of the paper and of the original code base, by name.

Family modules register their tasks on import; the order matters only in that mixtures look up
the main tasks they extend.
"""

from countlib.tasks import (  # noqa: F401
    auxiliary,
    counting,
    digits,  # noqa: F401  (imports the families it wraps itself)
    mixtures,  # noqa: F401  (after the families it combines)
    modular,
    probes,
    raspl,
    selective,
)
from countlib.tasks.base import (
    HELPER_TOKENS,
    UNSUPERVISED,
    DataError,
    Example,
    SplitInfo,
    Task,
    real_length,
)
from countlib.tasks.registry import UnknownTaskError, get_task, list_tasks, register

__all__ = [
    "HELPER_TOKENS",
    "UNSUPERVISED",
    "DataError",
    "Example",
    "SplitInfo",
    "Task",
    "UnknownTaskError",
    "get_task",
    "list_tasks",
    "real_length",
    "register",
]
