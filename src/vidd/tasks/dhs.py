"""`dhs-hepg2`: design 200-bp DNA that a HepG2 cell-type oracle calls HepG2-specific."""

from __future__ import annotations

from vidd.alphabets import DNA
from vidd.data.dhs import SEQUENCE_LENGTH, load_dhs
from vidd.tasks.base import Task


class DHSHepG2(Task):
    name = "dhs-hepg2"
    alphabet = DNA
    length = SEQUENCE_LENGTH

    def pretrain_sequences(self):
        data = load_dhs()
        return data["train"].sequences, data["valid"].sequences
