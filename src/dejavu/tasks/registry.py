"""The registry of tasks by name, and :func:`create_task`."""

from __future__ import annotations

from collections.abc import Callable

from ..arguments import check_types
from .base import Task

__all__ = ["TASKS", "create_task", "register_task"]

TASKS: dict[str, type[Task]] = {}


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: make a task available to :func:`create_task` and configs as ``name``.

    Example:
        >>> @register_task("edges")
        ... class Edges(Task):
        ...     name, key, channels, monitor = "edges", "edges", 1, ("loss", "min")
        >>> type(create_task("edges")).__name__
        'Edges'
        >>> del TASKS["edges"]
    """
    def add(cls: type[Task]) -> type[Task]:
        if name in TASKS:
            raise ValueError(f"register_task: a task named {name!r} already exists")
        TASKS[name] = cls
        return cls

    return add


def create_task(name: str, **kwargs) -> Task:
    """A task by name: any registered task (``segmentation``, ``depth``, ``normals``, ``denoising``,
    ``masked``, ``multitask`` with ``tasks=[{"name": ..., **kwargs}, ...]`` and optional ``weights``,
    and yours)."""
    if not isinstance(name, str):
        raise TypeError(f"create_task: name must be a task's name such as 'segmentation', got {name!r}")
    if name not in TASKS:
        raise ValueError(f"create_task: unknown task {name!r}; choose from {sorted(TASKS)}")
    check_types(TASKS[name].__name__, TASKS[name].__init__, kwargs)
    return TASKS[name](**kwargs)
