"""A stand-in for MOSES (1.58M molecules inside the molsets wheel, which tests do not download): a few hundred
small drug-like molecules made of substituted rings, split into "train" and "test" as `load_moses` returns them,
and a tiny SELFIES model over their tokens as the `moses/pretrained` asset.

`use_fake_moses(setattr)` puts them in place (`setattr`: pytest's `monkeypatch.setattr`, or the plain builtin in a
process of its own, as `fake_moses_cli.py`); the held-out set shrinks with them (`VALID_MOLECULES`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from support.assets import write_manifest

SUBSTITUENTS = ("C", "CC", "O", "N", "F", "Cl", "OC", "CN", "C(=O)O", "C(=O)N", "C#N", "CC(C)C", "NC(C)=O", "CO",
                "OCC", "C(F)(F)F")
RINGS = ("c1cc({a})ccc1{b}", "c1cc({a})c({b})nc1", "C1CC({a})N({b})CC1", "c1cc({a})c2cc({b})ccc2c1")
#: molecules held out (and the pretraining subset's size) at this scale
VALID_MOLECULES = 16
PRETRAIN_MOLECULES = 200


@lru_cache(maxsize=1)
def fake_moses() -> dict[str, tuple[str, ...]]:
    """{"train": ..., "test": ...}: canonical SMILES of every substituent pair on every ring, one in five for test."""
    from vidd.chem.molecules import canonical_smiles

    mols = sorted({canonical_smiles(ring.format(a=a, b=b)) for a in SUBSTITUENTS for b in SUBSTITUENTS
                   for ring in RINGS})
    return {"train": tuple(m for i, m in enumerate(mols) if i % 5), "test": tuple(mols[::5])}


def fake_load_moses(split: str) -> tuple[str, ...]:
    return fake_moses()[split]


def use_fake_moses(set_attribute) -> None:
    """`vidd.data.moses.load_moses` (and its users) read the fake molecules; the molecule task holds out fewer."""
    import vidd.chem.metrics
    import vidd.data.moses
    import vidd.tasks.molecules

    for module in (vidd.data.moses, vidd.chem.metrics):
        set_attribute(module, "load_moses", fake_load_moses)
    set_attribute(vidd.tasks.molecules, "VALID_MOLECULES", VALID_MOLECULES)
    set_attribute(vidd.tasks.molecules, "PRETRAIN_MOLECULES", PRETRAIN_MOLECULES)


def write_fake_moses_asset(root: Path) -> Path:
    """root/moses/pretrained: a tiny SELFIES transformer over the fake molecules' tokens, with root/MANIFEST.json
    (use as $VIDD_ASSETS). Returns the model folder."""
    from vidd.chem.molecules import selfies_alphabet, smiles_to_selfies
    from vidd.diffusion.pretrain import ModelConfig

    corpus = [smiles_to_selfies(s) for split in fake_moses().values() for s in split]
    folder = root / "moses" / "pretrained"
    torch.manual_seed(0)
    ModelConfig(backbone="transformer", hidden=16, layers=1, heads=2).build(selfies_alphabet(corpus), 56) \
        .save_pretrained(folder)
    write_manifest(root, "moses/pretrained")
    return folder
