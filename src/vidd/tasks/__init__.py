from vidd.tasks.base import Task, assets_dir
from vidd.tasks import dhs  # noqa: F401  (registers dhs-hepg2)

__all__ = ["Task", "assets_dir"]
