"""What differs per task, as one adapter object every stage asks the same questions."""

from pocketsize.tasks.base import (
    Task,
    architecture_family,
    check_architecture,
    get_task,
    load_model,
    register_task,
    resolve_task,
    task_for_dataset,
    task_from_architectures,
    task_names,
    task_of_model,
)

__all__ = [
    "Task",
    "architecture_family",
    "check_architecture",
    "get_task",
    "load_model",
    "register_task",
    "resolve_task",
    "task_for_dataset",
    "task_from_architectures",
    "task_names",
    "task_of_model",
]
