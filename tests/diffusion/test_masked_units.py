"""MaskedDiffusion details the exact-toy tests do not pin down: the sampler's default cache, the training
loss's stratified times, and the grid's clamp of a schedule that overshoots."""

from __future__ import annotations

import torch

from support.toy import table_model
from vidd.diffusion.schedule import NoiseSchedule


def test_the_default_sampler_reuses_the_denoiser_output():
    """By default (use_cache) a time-independent denoiser is called again only after a step that changed a
    token: far fewer calls than steps when steps >> length.

    Kills: the cache off by default."""
    model = table_model(length=3, seed=1)
    calls = []
    forward = model.backbone.forward
    model.backbone.forward = lambda *a: calls.append(1) or forward(*a)
    model.sample(4, 32, torch.Generator().manual_seed(0))
    assert 0 < len(calls) < 16


def test_loss_times_are_stratified_over_t_min_to_1():
    """loss() draws one offset u_0 ~ U(0, 1) and gives sequence i the time t_min + (1 - t_min) u_i with
    u_i = (u_0 + i / B) mod 1, t_min = 1e-3 by default: B evenly spaced times, in that order.

    Kills: another t_min, the stratification or its wrap-around changed."""
    model = table_model(length=4, seed=1)
    seen = []
    denoise = model.denoise
    model.denoise = lambda x_t, t: seen.append(t.clone()) or denoise(x_t, t)
    b = 10
    model.loss(torch.randint(0, 4, (b, 4), generator=torch.Generator().manual_seed(0)),
               torch.Generator().manual_seed(0))  # offset u_0 = 0.496
    u = (seen[0].double() - 1e-3) / (1 - 1e-3)
    expected = (u[0] + torch.arange(b, dtype=torch.float64) / b) % 1.0
    torch.testing.assert_close(u, expected, rtol=0, atol=1e-6)
    assert (u >= 0).all() and (u < 1).all() and (u < u[0]).any()  # the offset wrapped around


class Overshoot(NoiseSchedule):
    """m(t) = 1.5 t: above 1 for t > 2/3 (a badly written custom schedule)."""

    def move_chance(self, t):
        return 1.5 * t

    def elbo_weight(self, t):
        return 1.0 / t


def test_grid_clamps_the_mask_probabilities_to_0_1():
    model = table_model(length=4, seed=1)
    model.schedule = Overshoot()
    times, mask_probs = model.grid(6)
    expected = (1.5 * torch.linspace(1.0, 0.0, 7, dtype=torch.float64)).clamp(0.0, 1.0)
    torch.testing.assert_close(mask_probs, expected)
    assert mask_probs[1] == 1.0 and mask_probs[-1] == 0.0


def test_batch_size_bounds_the_denoiser_batches():
    """sample(n, batch_size=b) never sends the denoiser more than b sequences at once, and returns n samples.

    Kills: the batching skipped (e.g. only applied when recording)."""
    model = table_model(length=3, seed=1)
    sizes = []
    forward = model.backbone.forward
    model.backbone.forward = lambda x, t: sizes.append(len(x)) or forward(x, t)
    out = model.sample(10, 8, torch.Generator().manual_seed(0), batch_size=4)
    assert out.shape == (10, 3) and max(sizes) == 4 and min(sizes) == 2
