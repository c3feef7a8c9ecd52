from vidd.finetune.objectives.base import Batch, Method
from vidd.finetune.objectives.ddpo import DDPO, DDPOConfig, DDPOx0, DDPOx0Config
from vidd.finetune.objectives.ddpp import DDPP, DDPPConfig
from vidd.finetune.objectives.drakes import DRAKES, DRAKESConfig
from vidd.finetune.objectives.standard import StandardConfig, StandardFinetune
from vidd.finetune.objectives.vidd import VIDD, VIDDConfig, VIDDx0, VIDDx0Config

__all__ = ["Batch", "Method", "VIDD", "VIDDConfig", "VIDDx0", "VIDDx0Config", "StandardFinetune", "StandardConfig",
           "DDPO", "DDPOConfig", "DDPOx0", "DDPOx0Config", "DDPP", "DDPPConfig", "DRAKES", "DRAKESConfig"]
