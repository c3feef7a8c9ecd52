"""MOSES: 1.58M training and 176k test SMILES (drug-like ZINC molecules) from the `molsets` wheel.

Shipped inside `molsets==0.3.1` (MIT, data from ZINC). The package itself pins old libraries and
is never installed: `fetch_wheel_file` takes the two CSV files out of its wheel into the cache.
"""

from __future__ import annotations

import gzip
from functools import lru_cache

from vidd.chem.molecules import smiles_to_selfies
from vidd.core.atomic import atomic_open
from vidd.data.corpus import seeded_subset
from vidd.data.fetch import FetchError, WheelFile, cache_dir, fetch_wheel_file

MOSES_FILES = {
    "train": WheelFile("molsets==0.3.1", "moses/dataset/data/train.csv.gz",
                       "786f0313aa6b9ba5514df685f885742a70ea8d86f1a4fa48115f7f80a634265c", "moses-train.csv.gz"),
    "test": WheelFile("molsets==0.3.1", "moses/dataset/data/test.csv.gz",
                      "f896fbf3764f88d94670b9959e5872c600c12152a18233823e820761b7a791b2", "moses-test.csv.gz"),
}


@lru_cache(maxsize=2)
def load_moses(split: str) -> tuple[str, ...]:
    """All SMILES of a MOSES split ("train" or "test"), in file order."""
    if split not in MOSES_FILES:
        raise ValueError(f"MOSES split must be one of {sorted(MOSES_FILES)}, got {split!r}")
    path = fetch_wheel_file(MOSES_FILES[split])
    with gzip.open(path, "rt") as f:
        header = f.readline().strip()
        if header != "SMILES":
            raise FetchError(f"{path}: expected a 'SMILES' header, got {header!r}")
        return tuple(line.strip() for line in f if line.strip())


def training_subset(size: int, seed: int = 0) -> list[str]:
    """A seeded random subset of the MOSES training SMILES (the whole split if size <= 0)."""
    return seeded_subset(load_moses("train"), size, seed)


def selfies_corpus(size: int, seed: int = 0) -> list[str]:
    """SELFIES of `training_subset(size, seed)`, cached next to the data (encoding takes minutes)."""
    return _cached_selfies(training_subset(size, seed), f"moses-train-selfies-{size}-seed{seed}")


def pretraining_corpus(size: int, default: int, held_out: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(training, validation) SELFIES of MOSES training molecules. Validation is always the last `held_out`
    molecules of the seeded subset of `default + held_out` (every training size is judged on the same
    molecules, which none trains on); training is the rest of that subset (`size` 0), a seeded subset of `size`
    of the other molecules, or all of them (`size` -1, or more than there are: 1,584,663 - `held_out`)."""
    if size == 0:
        corpus = selfies_corpus(default + held_out, seed)
        return corpus[:-held_out], corpus[-held_out:]
    held = training_subset(default + held_out, seed)[-held_out:]
    tag = f"held-out-{held_out}-of-{default + held_out}-seed{seed}"
    valid = _cached_selfies(held, f"moses-train-selfies-{tag}")
    left_out = set(held)
    pool = [s for s in load_moses("train") if s not in left_out]
    chosen = seeded_subset(pool, size, seed)
    label = "all" if len(chosen) == len(pool) else str(size)
    return _cached_selfies(chosen, f"moses-train-selfies-{label}-outside-{tag}"), valid


def _cached_selfies(smiles: list[str], name: str) -> list[str]:
    """SELFIES of MOSES training SMILES, cached as `name`.txt in the cache folder."""
    path = cache_dir() / f"{name}.txt"
    if path.is_file():
        return path.read_text().split()
    corpus = [smiles_to_selfies(s, where=f"MOSES training molecule {s!r}") for s in smiles]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        f.write("\n".join(corpus) + "\n")
    return corpus
