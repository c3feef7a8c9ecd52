"""Reward-guided fine-tuning: roll-in, roll-out, value, the methods and the trainer."""

from vidd.training.config import FinetuneConfig
from vidd.training.trainer import FinetuneResult, Trainer

__all__ = ["FinetuneConfig", "FinetuneResult", "Trainer"]
