"""The paper's protein tasks: whole proteins designed by a protein language model prior.

Both run EvoDiff OA-DM (the paper's prior) or an ESM-2 masked LM as an order-agnostic diffusion model over
`length` designable residues (`vidd.diffusion.order_agnostic`), chosen, like everything else, by the task's
settings (config `task:`, e.g. `--set task.length=64`).
- `protein-ss`: proteins rich in one secondary structure; the reward is the fraction of residues in a β
  strand (or α helix) of the ESMFold structure, by P-SEA (biotite, as the paper's code) or DSSP (pydssp)
  (`vidd.rewards.esmfold.SecondaryStructureReward`).
- `protein-binder`: binders of a target protein (the paper's PD-L1 task); the reward is the paper's
  ipTM + 0.1 pLDDT - 0.02 ELU(Rg - Rg_th) from a structure predictor of the complex that the user plugs in
  (`vidd.rewards.binder`). vidd ships neither a predictor nor a target.
No weights ship with vidd or download at run time: the settings or environment variables point at local
copies, and a missing one fails with the steps that put it in place. See docs/tasks/protein.md.
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
from vidd.rewards.binder import BINDER_WEIGHTS, BinderReward, BinderTarget
from vidd.rewards.esmfold import ESMFOLD, SecondaryStructureReward
from vidd.rewards.structure import ASSIGNERS, STRUCTURE_CODES, secondary_structure, structure_fraction
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
class PriorSettings:
    length: int = option(100, "residues of every designed protein")
    prior: Literal["evodiff", "esm2"] = option(
        "evodiff", "the pretrained model: evodiff (EvoDiff OA-DM, the paper's) or esm2 (an ESM-2 masked LM)")
    prior_path: str = option(
        "", "the prior's weights: an EvoDiff checkpoint file or an ESM-2 model folder (empty: $VIDD_EVODIFF_OADM "
            "or $VIDD_ESM2_DIR)")
    prior_config: str = option(
        "", "evodiff: the model's config JSON (empty: the evodiff package's config38M.json, the 38M model's)")

    def validate(self):
        """Every integer setting is a count (>= 1)."""
        for name, value in vars(self).items():
            if isinstance(value, int) and value < 1:
                raise ConfigError(f"{name}: must be >= 1, got {value}")


class ProteinDesign(Task):
    """What the protein tasks share: the prior over `length` designable residues, and the metrics of samples
    that do not depend on the reward."""

    alphabet = PROTEIN
    chain = "order-agnostic"
    Settings = PriorSettings

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

    def check(self, seqs: list[str]) -> None:
        for i, s in enumerate(seqs, start=1):
            self.alphabet.validate(s, self.length, where=f"sample {i}")

    def prior_metrics(self, seqs: list[str], likelihood_samples: int | None, seed: int) -> dict:
        """Naturalness (ELBO under the prior of the chain with one residue per step), diversity, uniqueness."""
        steps = self.length
        elbo = self.log_likelihood(seqs, steps, likelihood_samples and min(likelihood_samples, steps), seed,
                                   batch_size=64)
        return {"log_likelihood_median": float(np.median(elbo)),
                "diversity": metrics.diversity(seqs) if len(seqs) > 1 else float("nan"),
                "uniqueness": metrics.uniqueness(seqs), "n": len(seqs)}


# ------------------------------------------------------------------ protein-ss
@dataclass
class ProteinSSSettings(PriorSettings):
    structure: Literal["strand", "helix"] = option("strand", "the secondary structure whose fraction is the reward")
    assigner: Literal["psea", "dssp"] = option(
        "psea", "who assigns secondary structure: psea (biotite annotate_sse, as the paper's code) or dssp (pydssp)")
    esmfold_path: str = option("", "the ESMFold model folder (empty: $VIDD_ESMFOLD_DIR)")
    fold_device: str = option("auto", "torch device of ESMFold in each process that scores (auto: cuda if available)")
    fold_batch_size: int = option(8, "sequences per ESMFold forward pass")


class ProteinSS(ProteinDesign):
    name = "protein-ss"
    Settings = ProteinSSSettings
    table_metrics = ("reward_median", "plddt_mean", "diversity", "log_likelihood_median", "uniqueness")
    tradeoff_metrics = ("diversity", "log_likelihood_median")

    def training_reward(self) -> SecondaryStructureReward:
        """The reward, after checking that ESMFold's weights are in place (they load at the first call)."""
        s = self.settings
        return SecondaryStructureReward(s.structure, s.assigner, str(ESMFOLD.resolve(s.esmfold_path or None)),
                                        s.fold_device, s.fold_batch_size)

    @cached_property
    def evaluation_reward(self) -> SecondaryStructureReward:
        """The training reward itself (the paper evaluates what it optimises); `evaluate` adds the fractions by
        the other assigner as a second opinion."""
        return self.training_reward()

    def evaluate(self, seqs: list[str], likelihood_samples: int | None = 4, seed: int = 0) -> dict:
        """Reward, both assigners' strand and helix fractions, pLDDT, naturalness and diversity of the samples
        (one ESMFold prediction per distinct sequence); keys in docs/metrics.md."""
        self.check(seqs)
        folds = self.evaluation_reward.folder.fold(seqs)
        fractions = {}
        for assigner in ASSIGNERS:
            states = [secondary_structure(f.backbone, f.sequence, assigner) for f in folds]
            for structure in STRUCTURE_CODES:
                fractions[structure, assigner] = np.array([structure_fraction(ss, structure) for ss in states])
        total = fractions[self.settings.structure, self.settings.assigner]
        out = {"reward_median": metrics.finite_median(total), "reward_mean": float(total.mean())}
        out.update({f"{structure}_fraction_{assigner}": float(v.mean())
                    for (structure, assigner), v in fractions.items()})
        out["plddt_mean"] = float(np.mean([f.plddt for f in folds]))
        return {**out, **self.prior_metrics(seqs, likelihood_samples, seed)}


# ------------------------------------------------------------------ protein-binder
@dataclass
class ProteinBinderSettings(PriorSettings):
    target_pdb: str = option(
        "", "PDB file of the target (the paper's PD-L1: residues 18-132 of the IgV domain; vidd ships none)")
    target_chain: str = option("A", "the target's chain in target_pdb")
    predictor: str = option(
        "", "the structure predictor of binder-target complexes, as 'package.module:factory' (a class or "
            "zero-argument function returning a vidd.rewards.binder.StructurePredictor)")
    predictor_batch_size: int = option(8, "binders per predictor call")


class ProteinBinder(ProteinDesign):
    """Reward terms (config `reward.terms`): iptm (1), plddt (0.1), compactness = -ELU(Rg - Rg_th) (0.02)."""

    name = "protein-binder"
    Settings = ProteinBinderSettings
    reward_terms = dict(BINDER_WEIGHTS)
    table_metrics = ("reward_median", "iptm_mean", "plddt_mean", "diversity", "log_likelihood_median")
    tradeoff_metrics = ("diversity", "log_likelihood_median")

    def training_reward(self) -> BinderReward:
        s = self.settings
        if not s.predictor:
            raise UserError(f"{self.name}: no structure predictor; set task.predictor to 'package.module:factory' "
                            f"of your AlphaFold2-multimer / ColabDesign set-up (docs/tasks/protein.md)")
        if not s.target_pdb:
            raise UserError(f"{self.name}: no target; set task.target_pdb to a PDB file of the target (and "
                            f"task.target_chain); vidd ships none (docs/tasks/protein.md says why)")
        return BinderReward(s.predictor, BinderTarget(s.target_pdb, s.target_chain), dict(self.reward_weights),
                            s.predictor_batch_size)

    @cached_property
    def evaluation_reward(self) -> BinderReward:
        """The training reward itself, as in the paper."""
        return self.training_reward()

    def evaluate(self, seqs: list[str], likelihood_samples: int | None = 4, seed: int = 0) -> dict:
        """Reward and its terms (one prediction per distinct binder), naturalness and diversity; keys in
        docs/metrics.md."""
        self.check(seqs)
        reward = self.evaluation_reward
        parts = reward.components(seqs)
        total = reward.combine(parts)
        out = {"reward_median": metrics.finite_median(total), "reward_mean": float(np.mean(total))}
        out.update({f"{k}_mean": float(np.mean(v)) for k, v in parts.items()})
        return {**out, **self.prior_metrics(seqs, likelihood_samples, seed)}
