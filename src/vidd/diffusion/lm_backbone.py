"""External masked language models as vidd denoisers.

`MaskedLMBackbone` is a `Backbone` around a masked LM of a known architecture (`ARCHITECTURES`: BERT and
ESM-2 through `transformers`, AntiBERTy through the `antiberty` package, EvoDiff's ByteNet through
`evodiff`). It maps vidd's letters and mask to the LM's token ids, adds the LM's special tokens
(e.g. [CLS] ... [SEP]) and returns the LM's logits restricted to vidd's letters, in vidd's order.
The LM ignores time: its marginals p(x_0^l | x_t) are a function of the visible tokens only. Run it
with the order-agnostic chain (`vidd.diffusion.order_agnostic`); `vidd.diffusion.loaders` builds both
from local files. Checkpoints hold the LM's config and weights, so they load without the original files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from vidd.core.alphabets import Alphabet
from vidd.core.extras import require
from vidd.diffusion.backbones import Backbone


@dataclass(frozen=True)
class Architecture:
    """How to build one masked-LM class from its config dict and get its logits (B, L', vocab)."""

    name: str
    build: Callable[[dict], nn.Module]
    logits: Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _bert_config(config: dict):
    transformers = require("transformers", "protein", "a BERT-style masked LM")
    return transformers.BertConfig.from_dict(config)


def _build_bert(config: dict) -> nn.Module:
    transformers = require("transformers", "protein", "a BERT masked LM")
    return transformers.BertForMaskedLM(_bert_config(config))


def _build_esm(config: dict) -> nn.Module:
    transformers = require("transformers", "protein", "an ESM-2 masked LM")
    return transformers.EsmForMaskedLM(transformers.EsmConfig.from_dict(config))


def _build_antiberty(config: dict) -> nn.Module:
    module = require("antiberty.model.AntiBERTy", "protein", "the AntiBERTy prior")
    return module.AntiBERTy(_bert_config(config))


def _build_bytenet(config: dict) -> nn.Module:
    module = require("evodiff.model", "evodiff", "an EvoDiff OA-DM model")
    return module.ByteNetLMTime(**config)


def _bytenet_logits(lm, ids):
    # OA-DM models have no time embedding (timesteps=None): the second argument is a placeholder, as in
    # evodiff's own samplers
    return lm(ids, torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device))


ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (
    Architecture("bert", _build_bert, lambda lm, ids: lm(input_ids=ids).logits),
    Architecture("esm", _build_esm, lambda lm, ids: lm(input_ids=ids).logits),
    Architecture("antiberty", _build_antiberty, lambda lm, ids: lm(input_ids=ids).prediction_logits),
    Architecture("evodiff-bytenet", _build_bytenet, _bytenet_logits),
)}


class MaskedLMBackbone(Backbone):
    """A masked LM as a vidd denoiser: token ids (letters + mask) -> logits over vidd's letters."""

    kind = "masked-lm"
    time_conditioned = False
    takes_relaxed_input = False

    @dataclass
    class Config:
        architecture: str  # a key of ARCHITECTURES
        lm_config: dict  # the LM's own config (e.g. BertConfig.to_dict()); rebuilds the network
        token_ids: list[int]  # LM token id of each vidd letter, then of the mask token (V + 1 entries)
        prefix: list[int] = field(default_factory=list)  # special ids before the sequence, e.g. [CLS]
        suffix: list[int] = field(default_factory=list)  # special ids after it, e.g. [SEP]
        source: str = ""  # where the weights came from (documentation only)

    def __init__(self, config: Config, lm: nn.Module | None = None):
        super().__init__()
        if config.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown masked-LM architecture {config.architecture!r}; known: {sorted(ARCHITECTURES)}")
        if len(set(config.token_ids)) != len(config.token_ids):
            raise ValueError("token_ids: every letter and the mask need their own LM token")
        self.config = config
        self.arch = ARCHITECTURES[config.architecture]
        self.lm = (lm if lm is not None else self.arch.build(config.lm_config)).eval()  # see `train`
        ids = torch.tensor(config.token_ids, dtype=torch.long)
        self.register_buffer("token_ids", ids, persistent=False)
        self.register_buffer("prefix", torch.tensor(config.prefix, dtype=torch.long), persistent=False)
        self.register_buffer("suffix", torch.tensor(config.suffix, dtype=torch.long), persistent=False)

    def train(self, mode: bool = True):
        """The LM always runs in eval mode (no dropout, whatever its config says): the denoiser is a
        deterministic function of its input, like vidd's own backbones (dropout 0), so a seeded CPU run is
        reproducible. Gradients flow as usual."""
        super().train(mode)
        self.lm.eval()
        return self

    def lm_input(self, tokens: torch.Tensor) -> torch.Tensor:
        """vidd token ids (B, L) -> the LM's input ids (B, len(prefix) + L + len(suffix))."""
        b = tokens.shape[0]
        return torch.cat([self.prefix.expand(b, -1), self.token_ids[tokens], self.suffix.expand(b, -1)], dim=1)

    def forward(self, tokens, t):
        if tokens.is_floating_point():
            raise NotImplementedError(
                "a masked-LM adapter takes token ids, not relaxed one-hot rows: methods that differentiate "
                "through samples (drakes) are not supported on adapter models")
        logits = self.arch.logits(self.lm, self.lm_input(tokens))
        start = len(self.config.prefix)
        return logits[:, start:start + tokens.shape[1]][..., self.token_ids[:-1]]


def vocabulary_ids(vocab: dict[str, int], alphabet: Alphabet, mask_token: str) -> list[int]:
    """LM ids of the alphabet's letters and of the LM's mask token, with an error naming a missing one."""
    missing = [c for c in (*alphabet.letters, mask_token) if c not in vocab]
    if missing:
        raise ValueError(f"the LM's vocabulary lacks {missing} (needed for the {alphabet.name} alphabet)")
    return [vocab[c] for c in alphabet.letters] + [vocab[mask_token]]
