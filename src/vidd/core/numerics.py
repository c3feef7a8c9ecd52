"""Small numerical helpers shared across layers."""

from __future__ import annotations

import numpy as np


def log_mean_exp(values: np.ndarray, alpha: float, axis: int = -1) -> np.ndarray:
    """alpha * log mean exp(values / alpha), stably (the Monte Carlo soft value)."""
    scaled = values / alpha
    top = scaled.max(axis=axis, keepdims=True)
    out = top + np.log(np.mean(np.exp(scaled - top), axis=axis, keepdims=True))
    return alpha * np.squeeze(out, axis=axis)
