from vidd.training.objectives.base import Batch, Method, MethodConfig, StateMethodConfig
from vidd.training.objectives.ddpo import DDPO, DDPOConfig, DDPOx0, DDPOx0Config
from vidd.training.objectives.ddpp import DDPP, DDPPConfig
from vidd.training.objectives.drakes import DRAKES, DRAKESConfig
from vidd.training.objectives.standard import StandardConfig, StandardFinetune
from vidd.training.objectives.vidd import VIDD, VIDDConfig, VIDDx0, VIDDx0Config

__all__ = ["Batch", "Method", "MethodConfig", "StateMethodConfig", "VIDD", "VIDDConfig", "VIDDx0", "VIDDx0Config", "StandardFinetune", "StandardConfig",
           "DDPO", "DDPOConfig", "DDPOx0", "DDPOx0Config", "DDPP", "DDPPConfig", "DRAKES", "DRAKESConfig"]
