"""Small numerical helpers shared across layers."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch


def log_mean_exp(values: np.ndarray, alpha: float, axis: int = -1) -> np.ndarray:
    """alpha * log mean exp(values / alpha), stably (the Monte Carlo soft value)."""
    scaled = values / alpha
    top = scaled.max(axis=axis, keepdims=True)
    out = top + np.log(np.mean(np.exp(scaled - top), axis=axis, keepdims=True))
    return alpha * np.squeeze(out, axis=axis)


def chunked(fn: Callable[..., torch.Tensor], *rows, size: int, empty: torch.Tensor | None = None) -> torch.Tensor:
    """torch.cat of fn(*chunk) over consecutive chunks of `size` rows of `rows` (tensors or lists, sliced alike),
    to bound memory. Chunks run in order, so a generator that fn draws from is consumed as by one loop.
    Zero rows give `empty` (by default torch.cat's error, for callers that never pass none)."""
    n = len(rows[0])
    if n == 0 and empty is not None:
        return empty
    return torch.cat([fn(*(r[i:i + size] for r in rows)) for i in range(0, n, size)])
