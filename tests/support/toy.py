"""Exact computations on enumerable toys (small alphabet and length)."""

from __future__ import annotations

import itertools

import torch

from vidd.core.alphabets import DNA
from vidd.diffusion.masked import MaskedDiffusion
from vidd.diffusion.pretrain import ModelConfig


def all_states(model: MaskedDiffusion, with_mask: bool) -> torch.Tensor:
    """Every sequence of the model's length over the letters (and the mask token if with_mask)."""
    symbols = range(model.alphabet.size + (1 if with_mask else 0))
    return torch.tensor(list(itertools.product(symbols, repeat=model.length)), dtype=torch.long)


def exact_sample_distribution(model: MaskedDiffusion, steps: int) -> torch.Tensor:
    """p(x_0) of the T-step ancestral sampler over all clean sequences (in `all_states(..., False)` order).

    Dynamic programming over the (V+1)^L partial states; differentiable through the model.
    """
    states = all_states(model, with_mask=True)  # (S, L)
    n, length = states.shape
    v, mask = model.alphabet.size, model.mask_index
    times, mask_probs = model.grid(steps)
    dist = torch.zeros(n, dtype=torch.float64)
    dist[(states == mask).all(-1).nonzero()[0, 0]] = 1.0
    src_masked = (states == mask)[:, None, :]  # (S, 1, L)
    same = states[:, None, :] == states[None, :, :]  # (S, S, L)
    dst_masked = (states == mask)[None, :, :]
    for k in range(steps):
        probs = model.denoise(states, times[k].float().expand(n)).exp().double()  # (S, L, V)
        m_t, m_s = float(mask_probs[k]), float(mask_probs[k + 1])
        dst = states.clamp(max=v - 1)  # (S, L)
        # p of revealing dst's letter at position l from source s: probs[s, l, dst[s', l]]
        reveal = torch.stack([probs[:, l, :][:, dst[:, l]] for l in range(length)], dim=-1)  # (S, S, L)
        factor = torch.where(
            src_masked,
            torch.where(dst_masked, torch.full_like(reveal, m_s / m_t), reveal * (m_t - m_s) / m_t),
            same.double(),
        )
        dist = dist @ factor.prod(-1)
    clean = ~(states == mask).any(-1)
    return dist[clean]


def toy_model(length: int = 4, seed: int = 0) -> MaskedDiffusion:
    """A tiny seeded transformer over DNA: small enough for exact computations at length <= 4."""
    torch.manual_seed(seed)
    return ModelConfig(backbone="transformer", hidden=32, layers=2, heads=2).build(DNA, length)
