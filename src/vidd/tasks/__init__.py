from vidd.tasks.base import Task, assets_dir
from vidd.tasks import antibody, custom, dhs, molecules, protein  # noqa: F401  (registers the tasks)

__all__ = ["Task", "assets_dir"]
