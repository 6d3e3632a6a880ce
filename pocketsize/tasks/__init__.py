"""What differs per task, as one adapter object every stage asks the same questions."""

from pocketsize.tasks.base import Task, get_task, register_task, task_for_dataset, task_names

__all__ = ["Task", "get_task", "register_task", "task_for_dataset", "task_names"]
