"""Small-molecule tasks: a SELFIES masked diffusion model pretrained on MOSES, fine-tuned for
drug-likeness (`moses-qed`) or for docking to PARP1 (`parp1-docking`, the paper's task).

Sequences are SELFIES strings (every one decodes to a molecule; the all-padding string is the
empty molecule, counted invalid). Sample files are `.smi`: SMILES, QED, SA and the SELFIES.
"""

from __future__ import annotations

from functools import cached_property, partial

import numpy as np
import torch

from vidd.chem.metrics import decode_all, molecule_metrics, moses_training_set, reference_properties
from vidd.chem.molecules import PAD, mol_from_smiles, read_smi_selfies, require, selfies_alphabet, write_smi
from vidd.chem.properties import internal_diversity, qed, sa_score
from vidd.core.numerics import chunked
from vidd.data.moses import selfies_corpus
from vidd.diffusion.masked import MaskedDiffusion
from vidd.eval.metrics import finite_median
from vidd.rewards.chem import DockingConfig, DockingReward, QEDReward
from vidd.rewards.executors import ExecutorConfig, ParallelReward
from vidd.tasks.base import Task, asset

#: MOSES molecules the pretrained model saw (a seeded subset; see docs/tasks/molecules.md)
PRETRAIN_MOLECULES = 200_000
VALID_MOLECULES = 2_000
#: SELFIES positions; longer molecules are left out of pretraining (none in the subset)
MAX_TOKENS = 56
PRETRAINED = "moses/pretrained"  # the model folder under assets/

class MoleculeTask(Task):
    length = MAX_TOKENS
    sample_suffix = ".smi"
    tradeoff_metrics = ("int_div", "nll_median")

    def _corpus(self) -> tuple[list[str], list[str]]:
        sf = require("selfies")
        corpus = [s for s in selfies_corpus(PRETRAIN_MOLECULES + VALID_MOLECULES) if sf.len_selfies(s) <= MAX_TOKENS]
        return corpus[:-VALID_MOLECULES], corpus[-VALID_MOLECULES:]

    def pretrain_sequences(self):
        return self._corpus()

    def pretrain_alphabet(self, train: list[str]):
        return selfies_alphabet(train)

    def pretrained_model(self):
        return MaskedDiffusion.from_pretrained(asset(PRETRAINED))

    @cached_property
    def alphabet(self):
        """The pretrained model's SELFIES vocabulary (plus the `[nop]` padding token)."""
        alphabet = self.likelihood_model.alphabet
        if alphabet.pad != PAD:
            raise ValueError(f"{asset(PRETRAINED)} is not a SELFIES model (pad {alphabet.pad!r})")
        return alphabet

    # ------------------------------------------------------------ samples
    def read_samples(self, path) -> list[str]:
        seqs = read_smi_selfies(path)
        for i, s in enumerate(seqs, start=1):
            self.alphabet.validate(s, self.length, where=f"{path}: molecule {i}")
        return seqs

    def write_samples(self, path, seqs: list[str], scores: dict[str, list] | None = None) -> None:
        """SMILES, QED, SA, `scores` and the SELFIES, one molecule a line."""
        smiles = decode_all(seqs)
        write_smi(path, smiles, {**self._properties(smiles), **(scores or {}), "SELFIES": [s or PAD for s in seqs]})

    @staticmethod
    def _properties(smiles: list[str | None]) -> dict[str, list[float]]:
        """QED and SA of each molecule (NaN for no valid molecule)."""
        mols = [mol_from_smiles(s) if s else None for s in smiles]
        return {"QED": [qed(m) if m else float("nan") for m in mols],
                "SA": [sa_score(m) if m else float("nan") for m in mols]}

    def per_sequence(self, seqs: list[str], reward=None, likelihood_samples: int | None = 8, seed: int = 0) -> dict:
        """The default columns (`sequence` is the SELFIES) with the molecule's `smiles` (`*`: none), QED and SA."""
        columns = super().per_sequence(seqs, reward, likelihood_samples, seed)
        smiles = decode_all(seqs)
        return {"sequence": columns.pop("sequence"), "smiles": [s or "*" for s in smiles], **self._properties(smiles),
                **columns}

    def diversity(self, seqs: list[str]) -> float:
        """Internal diversity (1 - mean Tanimoto, Morgan r=2) of the valid molecules."""
        return internal_diversity([mol_from_smiles(s) for s in decode_all(seqs) if s])

    # --------------------------------------------------------- evaluation
    def negative_log_likelihood(self, seqs: list[str], steps: int = 32, samples: int | None = 8,
                                seed: int = 0) -> np.ndarray:
        """-ELBO of the T-step chain under the pretrained model (an upper bound on the NLL), in nats."""
        return -self.log_likelihood(seqs, steps, samples, seed)

    @cached_property
    def reference(self):
        """10,000 MOSES test molecules and their properties: the naturalness reference."""
        return reference_properties(10_000)

    @cached_property
    def training_set(self) -> frozenset[str]:
        """All MOSES training SMILES, for novelty."""
        return moses_training_set()

    def evaluate(self, seqs: list[str], likelihood_samples: int | None = 8, with_fcd: bool = False,
                 seed: int = 0) -> dict:
        """Molecule metrics, the held-out reward and naturalness; keys in docs/metrics.md."""
        for i, s in enumerate(seqs, start=1):
            self.alphabet.validate(s, self.length, where=f"sample {i}")
        out = self.reward_metrics(seqs)
        out.update(molecule_metrics(seqs, self.reference, self.training_set, with_fcd=with_fcd))
        nll = self.negative_log_likelihood(seqs, samples=likelihood_samples, seed=seed)
        out["nll_median"] = float(np.median(nll))
        return out

    def reward_metrics(self, seqs: list[str]) -> dict:
        raise NotImplementedError

    def model_report(self, model, n_samples: int = 10_000, steps: int = 32, seed: int = 0) -> dict:
        """MOSES metrics of `n_samples` samples against the MOSES test set, FCD included, and the
        validation ELBO of the held-out corpus molecules."""
        gen = torch.Generator().manual_seed(seed)
        samples = self.alphabet.decode(model.sample(n_samples, steps, gen, batch_size=500).cpu())
        report = {"samples": n_samples, "steps": steps}
        report.update(molecule_metrics(samples, self.reference, self.training_set, with_fcd=True))
        _, valid = self._corpus()
        tokens = self.alphabet.encode(valid, self.length)
        with torch.no_grad():
            nelbo = chunked(lambda s: model.loss(s.to(model.device), gen).cpu(), tokens, size=500)
        report["valid_nelbo_bits_per_token"] = float(nelbo.mean() / self.length / np.log(2))
        report["valid_nelbo_nats_per_molecule"] = float(nelbo.mean())
        return report


class MosesQED(MoleculeTask):
    """Raise drug-likeness (QED) of MOSES-like molecules; cheap (1 ms per molecule), used in tests."""

    name = "moses-qed"
    table_metrics = ("QED", "SA", "nll_median", "validity", "uniqueness", "novelty", "int_div")

    def training_reward(self):
        return QEDReward()

    @cached_property
    def evaluation_reward(self):
        """QED is an exact property, not a learned oracle: the same function evaluates."""
        return QEDReward()

    def reward_metrics(self, seqs):
        return {"qed_median": finite_median(self.evaluation_reward(seqs))}


class PARP1Docking(MoleculeTask):
    """The paper's molecule task: maximise -Vina score against PARP1 (dockstring's receptor and box).

    Training docks at exhaustiveness 1 (seed 0); evaluation re-docks at exhaustiveness 8 with
    another seed, so a molecule that only fooled the cheap search does not count."""

    name = "parp1-docking"
    table_metrics = ("docking_median", "docking_top10", "QED", "SA", "nll_median", "validity", "uniqueness",
                     "novelty", "int_div")
    target = "PARP1"

    def training_reward(self):
        return DockingReward(DockingConfig(target=self.target, exhaustiveness=1, seed=0))

    @cached_property
    def evaluation_reward(self):
        factory = partial(DockingReward, DockingConfig(target=self.target, exhaustiveness=8, seed=1))
        return ParallelReward(factory, ExecutorConfig(kind="process", batch_size=1, retries=1))

    def reward_metrics(self, seqs):
        values = self.evaluation_reward(seqs)
        finite = np.sort(values[np.isfinite(values)])[::-1]
        top = finite[: max(1, len(finite) // 10)]
        return {
            "docking_median": finite_median(finite),
            "docking_top10": float(top.mean()) if len(finite) else float("nan"),
            "docking_failures": int(len(values) - len(finite)),
        }
