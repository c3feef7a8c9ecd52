from vidd.finetune.objectives.base import Batch, Method
from vidd.finetune.objectives.vidd import VIDD, VIDDConfig, VIDDx0, VIDDx0Config

__all__ = ["Batch", "Method", "VIDD", "VIDDConfig", "VIDDx0", "VIDDx0Config"]
