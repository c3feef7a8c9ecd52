"""`test-toy-gc`: a registered toy task (12-letter DNA, GC content as the reward, a tiny CNN prior) for CLI
and run tests; its presets are YAML files in tests/fixtures/presets/test-toy-gc."""

from pathlib import Path

import numpy as np
import torch

from vidd.core.alphabets import DNA
from vidd.diffusion.pretrain import ModelConfig
from vidd.eval.metrics import diversity
from vidd.tasks import Task


def gc(seqs):
    return np.array([(s.count("G") + s.count("C")) / len(s) for s in seqs])


class ToyGC(Task):
    name = "test-toy-gc"
    alphabet = DNA
    length = 12
    # the reward runs batched in this process (defaults), 3 sequences a batch (the preset wins over defaults)
    presets_dir = Path(__file__).parents[1] / "fixtures" / "presets" / "test-toy-gc"
    evaluation_reward = staticmethod(gc)

    def pretrained_model(self):
        torch.manual_seed(0)
        return ModelConfig(hidden=8, stacks=1, dilations=[1, 2]).build(DNA, self.length)

    def training_reward(self):
        return gc

    def evaluate(self, seqs, likelihood_samples: int | None = 2):
        """GC content, diversity and the ELBO of the 16-step chain (`vidd evaluate --likelihood-samples` may ask
        for 1 to 16 of its steps)."""
        loglik = self.log_likelihood(seqs, 16, likelihood_samples)
        return {"reward_median": float(np.median(gc(seqs))), "diversity": diversity(seqs), "n": len(seqs),
                "log_likelihood_median": float(np.median(loglik))}

    def model_report(self, model, n_samples: int = 1000):
        """Where the model runs and what it samples (enough to check the CLI's options)."""
        seqs = self.alphabet.decode(model.sample(n_samples, 4, torch.Generator().manual_seed(0)).cpu())
        return {"device": str(model.device), "samples": len(seqs), "gc": float(np.mean(gc(seqs)))}
