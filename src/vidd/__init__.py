"""vidd: reward-guided fine-tuning of masked discrete diffusion models for biomolecular design.

The Python API: `vidd.finetune(model, reward, config, out=...)` for any model and reward,
`vidd.build_run(task, config, out)` for a task, and `vidd.FinetuneConfig` / `vidd.finetune_config`
for the settings.
"""

from vidd.core.version import __version__
from vidd.run import build_run, finetune, finetune_config
from vidd.tasks import Task
from vidd.training import FinetuneConfig, FinetuneResult

__all__ = ["FinetuneConfig", "FinetuneResult", "Task", "build_run", "finetune", "finetune_config", "__version__"]
