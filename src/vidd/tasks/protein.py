"""`protein-ss`: design proteins rich in one secondary structure, the paper's secondary-structure task.

The prior is EvoDiff OA-DM (the paper's) or an ESM-2 masked LM, run as an order-agnostic diffusion model
over `length` designable residues (`vidd.diffusion.order_agnostic`); the reward is the fraction of residues
in a β strand (or α helix) of the ESMFold structure, assigned by P-SEA (biotite, as the paper's code) or
DSSP (pydssp) (`vidd.rewards.esmfold.SecondaryStructureReward`). Everything is chosen by the task's settings
(config `task:`, e.g. `--set task.length=64 --set task.structure=helix`). No weights ship with vidd or
download at run time: the settings or environment variables point at local copies, and a missing one
fails with the steps that put it in place. See docs/tasks/protein.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np

from vidd.core.alphabets import PROTEIN
from vidd.core.config import ConfigError, option
from vidd.core.errors import UserError
from vidd.core.weights import WeightsSource
from vidd.diffusion.loaders import load_esm2, load_evodiff_oadm
from vidd.eval import metrics
from vidd.rewards.esmfold import SecondaryStructureReward
from vidd.rewards.structure import ASSIGNERS, STRUCTURE_CODES
from vidd.tasks.base import Task

#: where each prior's weights come from (setting task.prior_path or the environment variable)
PRIOR_WEIGHTS = {
    "evodiff": WeightsSource(
        "EvoDiff OA-DM 38M checkpoint (oaar-38M.tar)", "VIDD_EVODIFF_OADM", "task.prior_path",
        "curl -L -o oaar-38M.tar 'https://zenodo.org/record/8045076/files/oaar-38M.tar?download=1'", kind="file"),
    "esm2": WeightsSource(
        "ESM-2 masked LM (e.g. facebook/esm2_t33_650M_UR50D)", "VIDD_ESM2_DIR", "task.prior_path",
        "pip install -U huggingface_hub && hf download facebook/esm2_t33_650M_UR50D --local-dir esm2_t33_650M_UR50D"),
}


@dataclass
class ProteinSSSettings:
    length: int = option(100, "residues of every designed protein (the paper's code: 256)")
    structure: Literal["strand", "helix"] = option("strand", "the secondary structure whose fraction is the reward")
    assigner: Literal["psea", "dssp"] = option(
        "psea", "who assigns secondary structure: psea (biotite annotate_sse, as the paper's code) or dssp (pydssp)")
    prior: Literal["evodiff", "esm2"] = option(
        "evodiff", "the pretrained model: evodiff (EvoDiff OA-DM, the paper's) or esm2 (an ESM-2 masked LM)")
    prior_path: str = option(
        "", "the prior's weights: an EvoDiff checkpoint file or an ESM-2 model folder (empty: $VIDD_EVODIFF_OADM "
            "or $VIDD_ESM2_DIR)")
    prior_config: str = option(
        "", "evodiff: the model's config JSON (empty: the evodiff package's config38M.json, the 38M model's)")
    esmfold_path: str = option("", "the ESMFold model folder (empty: $VIDD_ESMFOLD_DIR)")
    fold_device: str = option("auto", "torch device of ESMFold in each process that scores (auto: cuda if available)")
    fold_batch_size: int = option(8, "sequences per ESMFold forward pass")

    def validate(self):
        for name in ("length", "fold_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")


class ProteinSS(Task):
    name = "protein-ss"
    alphabet = PROTEIN
    Settings = ProteinSSSettings
    table_metrics = ("reward_median", "plddt_mean", "diversity", "log_likelihood_median", "uniqueness")
    tradeoff_metrics = ("diversity", "log_likelihood_median")

    @property
    def length(self) -> int:
        return self.settings.length

    def pretrain_sequences(self):
        raise UserError(f"{self.name}: the prior (EvoDiff OA-DM or ESM-2) was pretrained by its authors on UniRef; "
                        f"`vidd pretrain` does not train it")

    def pretrained_model(self):
        """The prior over `length` designable residues, from local weights."""
        s = self.settings
        path = PRIOR_WEIGHTS[s.prior].resolve(s.prior_path or None)
        if s.prior == "esm2":
            model = load_esm2(path, length=s.length)
        else:
            model = load_evodiff_oadm(path, s.prior_config or None, length=s.length)
        model.metadata = {"task": self.name, "prior": s.prior, "length": s.length}
        return model

    # ---------------------------------------------------------- rewards
    def training_reward(self) -> SecondaryStructureReward:
        s = self.settings
        return SecondaryStructureReward(s.structure, s.assigner, s.esmfold_path or None, s.fold_device,
                                        s.fold_batch_size)

    @cached_property
    def evaluation_reward(self) -> SecondaryStructureReward:
        """The training reward itself (the paper evaluates what it optimises); `evaluate` adds the fractions by
        the other assigner as a second opinion."""
        return self.training_reward()

    # ---------------------------------------------------------- metrics
    def evaluate(self, seqs: list[str], likelihood_samples: int | None = 4, seed: int = 0) -> dict:
        """Reward, both assigners' strand and helix fractions, pLDDT, naturalness and diversity of the samples
        (one ESMFold prediction per distinct sequence); keys in docs/metrics.md."""
        for i, s in enumerate(seqs, start=1):
            self.alphabet.validate(s, self.length, where=f"sample {i}")
        reward = self.evaluation_reward
        folds = reward.folder.fold(seqs)
        total = np.array([reward.fraction(f) for f in folds])
        out = {"reward_median": metrics.finite_median(total), "reward_mean": float(total.mean())}
        for structure in STRUCTURE_CODES:
            for assigner in ASSIGNERS:
                out[f"{structure}_fraction_{assigner}"] = float(np.mean([reward.fraction(f, assigner, structure)
                                                                         for f in folds]))
        steps = self.length
        elbo = self.log_likelihood(seqs, steps, likelihood_samples and min(likelihood_samples, steps), seed,
                                   batch_size=64)
        out.update({
            "plddt_mean": float(np.mean([f.plddt for f in folds])),
            "log_likelihood_median": float(np.median(elbo)),
            "diversity": metrics.diversity(seqs) if len(seqs) > 1 else float("nan"),
            "uniqueness": metrics.uniqueness(seqs),
            "n": len(seqs),
        })
        return out
