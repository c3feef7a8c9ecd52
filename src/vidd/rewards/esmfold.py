"""ESMFold structure predictions and the secondary-structure reward computed on them.

ESMFold v1 comes through `transformers` (`EsmForProteinFolding`, extra [protein]) from a local model folder
(`ESMFOLD`: task setting `esmfold_path` or $VIDD_ESMFOLD_DIR); it is never downloaded. A process loads it
once (`load_esmfold` is cached), so with a reward executor every worker holds one copy and the main process
shares its copy between the training reward, the evaluation reward and the task's metrics. Predictions are
cached per sequence (`ESMFold.fold`).

`SecondaryStructureReward` is the paper's secondary-structure reward: the fraction of residues in a
β strand (or α helix) of the ESMFold structure, assigned by DSSP or P-SEA (`vidd.rewards.structure`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from vidd.core.errors import UserError
from vidd.core.extras import require
from vidd.core.weights import WeightsSource
from vidd.rewards.base import BatchCache, Reward
from vidd.rewards.structure import ASSIGNERS, STRUCTURE_CODES, secondary_structure, structure_fraction

ESMFOLD = WeightsSource(
    "ESMFold v1 (transformers EsmForProteinFolding, facebook/esmfold_v1)", "VIDD_ESMFOLD_DIR", "task.esmfold_path",
    "pip install -U huggingface_hub && hf download facebook/esmfold_v1 --local-dir esmfold_v1")
#: atom14 slots of N, CA, C, O (the first four of every residue type in AlphaFold's atom14 order)
ATOM14_BACKBONE = [0, 1, 2, 3]


def fold_device(device: str) -> str:
    """`auto`: the first CUDA device if there is one, else the CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_esmfold(path: str | None = None, device: str = "auto") -> torch.nn.Module:
    """ESMFold from a local Hugging Face folder (`path`, else $VIDD_ESMFOLD_DIR), in eval mode on `device`; one
    copy per process and folder. The ESM-2 language model inside runs in float16 as saved on a GPU, in float32
    on the CPU."""
    return _load_esmfold(str(ESMFOLD.resolve(path)), fold_device(device))


@functools.lru_cache(maxsize=1)
def _load_esmfold(folder: str, device: str) -> torch.nn.Module:
    transformers = require("transformers", "protein", "ESMFold")
    config = transformers.AutoConfig.from_pretrained(folder)
    if not getattr(config, "is_folding_model", False):
        raise UserError(f"{folder}: not an ESMFold model (config.json has no is_folding_model: true; "
                        f"model_type {config.model_type!r})")
    model = transformers.EsmForProteinFolding.from_pretrained(folder)
    if torch.device(device).type == "cpu":
        model.esm.float()
    return model.to(device).eval()


@dataclass(frozen=True)
class Fold:
    """What the rewards need of one ESMFold prediction."""

    sequence: str
    backbone: np.ndarray  # (L, 4, 3) N, CA, C, O coordinates, Angstrom
    plddt: float  # mean pLDDT over the predicted atoms, in [0, 1] (ESMFold's mean_plddt / 100)


class ESMFold:
    """Predicts structures with ESMFold (`load_esmfold`) in batches; keeps the last `cache_size` folds."""

    def __init__(self, path: str | None = None, device: str = "auto", batch_size: int = 8,
                 cache_size: int = 4096):
        self.path, self.device = path, device
        self.cache = BatchCache(self._predict, batch_size, cache_size)

    @property
    def model(self) -> torch.nn.Module:
        return load_esmfold(self.path, self.device)

    def fold(self, seqs: list[str]) -> list[Fold]:
        return self.cache(seqs)

    @torch.no_grad()
    def _predict(self, seqs: list[str]) -> list[Fold]:
        out = self.model.infer(seqs)
        positions = out["positions"][-1][..., ATOM14_BACKBONE, :].double().cpu().numpy()  # (B, L, 4, 3)
        exists = out["atom37_atom_exists"].double().cpu()
        plddt = ((out["plddt"].double().cpu() * exists).sum((1, 2)) / exists.sum((1, 2))).numpy()
        return [Fold(s, positions[i, :len(s)], float(plddt[i])) for i, s in enumerate(seqs)]


class SecondaryStructureReward(Reward):
    """Fraction of residues in `structure` (strand or helix) of the ESMFold structure, by `assigner` (dssp or
    psea). ESMFold loads at the first call, in the process that scores (a reward executor's worker)."""

    def __init__(self, structure: str = "strand", assigner: str = "psea", esmfold_path: str | None = None,
                 device: str = "auto", batch_size: int = 8):
        if structure not in STRUCTURE_CODES:
            raise ValueError(f"structure: one of {sorted(STRUCTURE_CODES)}, got {structure!r}")
        if assigner not in ASSIGNERS:
            raise ValueError(f"assigner: one of {list(ASSIGNERS)}, got {assigner!r}")
        self.structure, self.assigner = structure, assigner
        self.esmfold_path, self.device, self.batch_size = esmfold_path, device, batch_size
        self.name = f"{structure}_fraction_{assigner}"

    @cached_property
    def folder(self) -> ESMFold:
        return ESMFold(self.esmfold_path, self.device, self.batch_size)

    def score(self, seqs):
        return np.array([structure_fraction(secondary_structure(f.backbone, f.sequence, self.assigner),
                                            self.structure) for f in self.folder.fold(seqs)])
