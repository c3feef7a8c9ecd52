"""Reward-guided fine-tuning: roll-in, roll-out, value, objective and the trainer."""

from vidd.finetune.trainer import FinetuneConfig, FinetuneResult, Trainer, finetune

__all__ = ["FinetuneConfig", "FinetuneResult", "Trainer", "finetune"]
