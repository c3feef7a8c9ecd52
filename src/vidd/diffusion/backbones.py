"""Denoiser networks: token ids (letters + mask) and time -> logits over the letters.

Tokens may also be float one-hot rows (B, L, V + 1) (letters + mask), e.g. straight-through
Gumbel-softmax samples, so that gradients flow into the input (DRAKES).

Each backbone declares `time_conditioned`; when False the sampler may reuse a denoiser
output across steps in which no token changed (MDLM's cached sampler).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

#: modules defining vidd's other backbones, imported when a checkpoint names one (they import this module)
BUILTIN_BACKBONES = {"masked-lm": "vidd.diffusion.lm_backbone"}


class Backbone(nn.Module):
    kind: str = ""
    registry: dict[str, type[Backbone]] = {}
    time_conditioned: bool = False
    #: takes relaxed one-hot rows (B, L, V + 1) as well as token ids (methods that differentiate through samples)
    takes_relaxed_input: bool = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind:
            Backbone.registry[cls.kind] = cls

    def spec(self) -> dict:
        """Everything needed to rebuild this network (stored in checkpoints)."""
        return {"kind": self.kind, **asdict(self.config)}

    @staticmethod
    def from_spec(spec: dict) -> Backbone:
        spec = dict(spec)
        kind = spec.pop("kind")
        if kind not in Backbone.registry and kind in BUILTIN_BACKBONES:
            importlib.import_module(BUILTIN_BACKBONES[kind])  # registers the backbone
        if kind not in Backbone.registry:
            raise ValueError(f"unknown backbone {kind!r}; known: {sorted(Backbone.registry)}")
        cls = Backbone.registry[kind]
        return cls(cls.Config(**spec))

    def forward(self, tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # (B, L), (B,) -> (B, L, V)
        raise NotImplementedError

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings (B, L, H) of ids (B, L) long, or of (relaxed) one-hot rows (B, L, V + 1) float
        (`tokens @ embed.weight`; a hard one-hot gives exactly the lookup), for gradients through samples."""
        if tokens.is_floating_point():
            return tokens.to(self.embed.weight.dtype) @ self.embed.weight
        return self.embed(tokens)


def time_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = 1000.0 * t[:, None].float() * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class _ConvBlock(nn.Module):
    def __init__(self, hidden: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.conv = nn.Conv1d(hidden, hidden, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h):  # (B, L, H)
        y = self.conv(self.norm(h).transpose(1, 2)).transpose(1, 2)
        return h + self.dropout(torch.nn.functional.gelu(y))


class DilatedCNN(Backbone):
    """Residual stacks of dilated 1-D convolutions (the MDLM / DRAKES enhancer denoiser shape)."""

    kind = "cnn"

    @dataclass
    class Config:
        vocab_size: int  # letters, mask excluded
        hidden: int = 128
        stacks: int = 4
        dilations: list[int] = field(default_factory=lambda: [1, 1, 4, 16, 64])
        kernel: int = 9
        dropout: float = 0.0
        time_conditioned: bool = False

    def __init__(self, config: Config):
        super().__init__()
        if config.kernel % 2 == 0:
            raise ValueError(f"cnn kernel must be odd (same-length padding), got {config.kernel}")
        self.config = config
        self.time_conditioned = config.time_conditioned
        self.embed = nn.Embedding(config.vocab_size + 1, config.hidden)
        self.blocks = nn.ModuleList(
            _ConvBlock(config.hidden, config.kernel, d, config.dropout)
            for _ in range(config.stacks)
            for d in config.dilations
        )
        self.time_proj = nn.Linear(config.hidden, config.hidden) if config.time_conditioned else None
        self.out_norm = nn.LayerNorm(config.hidden)
        self.out = nn.Linear(config.hidden, config.vocab_size)

    def forward(self, tokens, t):
        h = self.embed_tokens(tokens)
        if self.time_proj is not None:
            h = h + self.time_proj(time_features(t, self.config.hidden))[:, None]
        for block in self.blocks:
            h = block(h)
        return self.out(self.out_norm(h))


class Transformer(Backbone):
    """A small bidirectional pre-norm transformer encoder with learned positions."""

    kind = "transformer"

    @dataclass
    class Config:
        vocab_size: int
        max_length: int
        hidden: int = 256
        layers: int = 4
        heads: int = 4
        dropout: float = 0.0
        time_conditioned: bool = False

    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        self.time_conditioned = config.time_conditioned
        self.embed = nn.Embedding(config.vocab_size + 1, config.hidden)
        self.position = nn.Parameter(torch.zeros(config.max_length, config.hidden))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            config.hidden, config.heads, 4 * config.hidden, config.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.time_proj = nn.Linear(config.hidden, config.hidden) if config.time_conditioned else None
        self.out_norm = nn.LayerNorm(config.hidden)
        self.out = nn.Linear(config.hidden, config.vocab_size)

    def forward(self, tokens, t):
        if tokens.shape[1] > self.config.max_length:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds max_length {self.config.max_length}")
        h = self.embed_tokens(tokens) + self.position[: tokens.shape[1]]
        if self.time_proj is not None:
            h = h + self.time_proj(time_features(t, self.config.hidden))[:, None]
        return self.out(self.out_norm(self.encoder(h)))
