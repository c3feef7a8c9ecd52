"""vidd: reward-guided fine-tuning of masked discrete diffusion models for biomolecular design."""

__version__ = "0.1.0"


def finetune(model, reward, config=None, **kwargs):
    """Fine-tune a masked diffusion model against a reward; see `vidd.finetune.finetune`."""
    from vidd.finetune import finetune as _finetune  # here: `import vidd` (the CLI's start) loads no torch

    return _finetune(model, reward, config, **kwargs)
