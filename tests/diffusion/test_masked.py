"""Tests of the masked discrete diffusion core: schedules, noising, the reverse step, the sampler,
exact likelihoods on a toy model, the training loss, checkpoints and alphabets.

Everything uses tiny models so the whole file runs in seconds on 2 CPU cores. Where exactness is
needed, a hand-made "table" denoiser (logits = an arbitrary fixed function of the whole input
state) is used, so the model is not factorised and exact enumeration of the T-step chain is
meaningful.
"""

from __future__ import annotations

import itertools
import json
import math
import os

import pytest
import torch
from scipy import stats
from torch import nn

from vidd.core.alphabets import DNA, PROTEIN, Alphabet, SequenceError
from vidd.diffusion.backbones import Backbone, DilatedCNN, Transformer
from vidd.core.atomic import atomic_torch_save
from vidd.core.safefiles import CheckpointError, save_state, sha256_file
from vidd.diffusion.masked import LEGACY_FORMAT, MaskedDiffusion, Trajectory
from vidd.diffusion.schedule import CosineSchedule, LogLinearSchedule, NoiseSchedule
from vidd.core.errors import UserError

TOY = Alphabet("toy", "AB")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one thread is fastest and leaves the other core alone."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- models
class TableBackbone(Backbone):
    """Logits are a random lookup table keyed by the full input state: (L, V) logits per state.

    Not registered (kind ""), time-independent by default; `time_conditioned=True` makes it
    depend on t too (a different table for t > 0.5), to exercise the no-cache path.
    """

    def __init__(self, vocab: int, length: int, seed: int = 0, scale: float = 1.5,
                 time_conditioned: bool = False):
        super().__init__()
        base = vocab + 1
        g = gen(seed)
        self.time_conditioned = time_conditioned
        self.table = nn.Parameter(scale * torch.randn(2, base ** length, length, vocab, generator=g))
        self.register_buffer("powers", base ** torch.arange(length))

    def forward(self, tokens, t):
        idx = (tokens * self.powers).sum(-1)
        half = (t > 0.5).long() if self.time_conditioned else torch.zeros_like(idx)
        return self.table[half, idx]


def table_model(length: int = 3, alphabet: Alphabet = TOY, schedule: NoiseSchedule | None = None,
                seed: int = 0, **kw) -> MaskedDiffusion:
    return MaskedDiffusion(TableBackbone(alphabet.size, length, seed, **kw), alphabet, length, schedule)


def cnn_model(length: int = 12, alphabet: Alphabet = DNA, schedule=None, seed: int = 0,
              time_conditioned: bool = False) -> MaskedDiffusion:
    torch.manual_seed(seed)
    net = DilatedCNN(DilatedCNN.Config(alphabet.size, hidden=8, stacks=1, dilations=[1], kernel=3,
                                       time_conditioned=time_conditioned))
    return MaskedDiffusion(net, alphabet, length, schedule)


def transformer_model(length: int = 12, alphabet: Alphabet = DNA, schedule=None, seed: int = 0,
                      time_conditioned: bool = False) -> MaskedDiffusion:
    torch.manual_seed(seed)
    net = Transformer(Transformer.Config(alphabet.size, length, hidden=8, layers=1, heads=2,
                                         time_conditioned=time_conditioned))
    return MaskedDiffusion(net, alphabet, length, schedule)


TINY = {"cnn": cnn_model, "transformer": transformer_model}


def all_states(base: int, length: int) -> torch.Tensor:
    """Every sequence over {0..base-1}^length, (base**length, length), in table-index order."""
    return torch.tensor(list(itertools.product(range(base), repeat=length)), dtype=torch.long).flip(-1)


# ---------------------------------------------------------------------------- schedule
SCHEDULES = [LogLinearSchedule(), LogLinearSchedule(eps=0.1), CosineSchedule()]


def test_loglinear_move_chance():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    for eps in (1e-3, 0.1):
        torch.testing.assert_close(LogLinearSchedule(eps).move_chance(t), (1 - eps) * t)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_elbo_weight_is_log_derivative_of_mask_prob(schedule):
    """elbo_weight(t) = m'(t) / m(t) (= -d/dt log(1 - m) of the unmasked fraction... in MDLM's
    alpha notation -alpha'/(1 - alpha)); checked by central finite differences, and positive."""
    t = torch.linspace(0.02, 0.98, 25, dtype=torch.float64)
    h = 1e-6
    dm = (schedule.move_chance(t + h) - schedule.move_chance(t - h)) / (2 * h)
    expected = dm / schedule.move_chance(t)
    torch.testing.assert_close(schedule.elbo_weight(t), expected, rtol=1e-6, atol=1e-8)
    assert (schedule.elbo_weight(t) > 0).all()


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
@pytest.mark.parametrize("steps", [1, 2, 7, 128])
def test_grid_endpoints_and_monotone(schedule, steps):
    model = MaskedDiffusion(TableBackbone(2, 1), TOY, 1, schedule)
    times, m = model.grid(steps)
    assert times.shape == m.shape == (steps + 1,)
    assert times[0] == 1.0 and times[-1] == 0.0 and (times.diff() < 0).all()
    assert m[0] == 1.0 and m[-1] == 0.0
    assert (m.diff() < 0).all(), m
    inner = schedule.move_chance(times[1:-1])
    torch.testing.assert_close(m[1:-1], inner)


def test_grid_rejects_zero_steps():
    with pytest.raises(ValueError, match="steps"):
        table_model().grid(0)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_schedule_dict_round_trip(schedule):
    again = NoiseSchedule.from_dict(schedule.to_dict())
    assert type(again) is type(schedule) and again == schedule
    with pytest.raises(ValueError, match="unknown noise schedule"):
        NoiseSchedule.from_dict({"name": "nope"})


# ----------------------------------------------------------------------------- noising
def test_noise_marginals():
    model = cnn_model(length=16)
    x0 = torch.randint(0, 4, (4000, 16), generator=gen(1))
    for p in (0.0, 0.3, 0.8, 1.0):
        x_t = model.noise(x0, torch.tensor(p), gen(2))
        masked = x_t == model.mask_index
        n = masked.numel()
        assert abs(masked.float().mean().item() - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-9
        assert torch.equal(x_t[~masked], x0[~masked])  # unmasked tokens are the data
        assert set(x_t.unique().tolist()) <= set(range(5))


def test_noise_per_row_probabilities():
    model = cnn_model(length=16)
    x0 = torch.randint(0, 4, (3000, 16), generator=gen(3))
    p = torch.tensor([0.0, 0.25, 0.5, 1.0]).repeat(750)
    x_t = model.noise(x0, p, gen(4))
    masked = (x_t == model.mask_index).float()
    for value in (0.0, 0.25, 0.5, 1.0):
        rows = p == value
        frac = masked[rows].mean().item()
        n = masked[rows].numel()
        assert abs(frac - value) <= 5 * math.sqrt(value * (1 - value) / n) + 1e-9
    keep = x_t != model.mask_index
    assert torch.equal(x_t[keep], x0[keep])


# ---------------------------------------------------------------------------- denoiser
@pytest.mark.parametrize("kind", sorted(TINY))
def test_denoise_subs_parameterisation(kind):
    model = TINY[kind](length=10)
    x_t = torch.randint(0, 5, (6, 10), generator=gen(5))
    x_t[0] = model.mask_index
    lp = model.denoise(x_t, torch.tensor(0.5))
    assert lp.shape == (6, 10, 4)  # letters only, the mask is excluded
    torch.testing.assert_close(lp.logsumexp(-1), torch.zeros(6, 10))
    carried = x_t != model.mask_index
    onehot = torch.nn.functional.one_hot(x_t.clamp(max=3), 4).bool()
    assert (lp[carried][onehot[carried]] == 0).all()
    assert torch.isneginf(lp[carried][~onehot[carried]]).all()
    assert torch.isfinite(lp[~carried]).all()
    # per-sequence times are accepted too
    torch.testing.assert_close(model.denoise(x_t, torch.full((6,), 0.5)), lp)


# ------------------------------------------------------------------------ reverse step
def test_step_frequencies_match_transition():
    """Carry-over, stay-masked rate m_s/m_t and letter frequencies p(x0 | x_t) on many draws."""
    model = cnn_model(length=6)
    M = model.mask_index
    state = torch.tensor([M, 2, M, M, 0, M])
    n = 20000
    x_t = state.repeat(n, 1)
    m_t, m_s = 0.6, 0.2
    with torch.no_grad():
        log_x0 = model.denoise(x_t, torch.tensor(0.6))
    x_s = model.step(x_t, log_x0, m_t, m_s, gen(6))
    carried = state != M
    assert torch.equal(x_s[:, carried], x_t[:, carried])  # unmasked tokens never change
    p_stay = m_s / m_t
    for pos in torch.nonzero(~carried).flatten().tolist():
        col = x_s[:, pos]
        stay = (col == M).float().mean().item()
        assert abs(stay - p_stay) <= 5 * math.sqrt(p_stay * (1 - p_stay) / n)
        revealed = col[col != M]
        counts = torch.bincount(revealed, minlength=4).double()
        expected = log_x0[0, pos].double().exp() * len(revealed)
        chi2 = ((counts - expected) ** 2 / expected).sum().item()
        assert chi2 < stats.chi2.ppf(0.9999, df=3), (pos, counts, expected)


def test_step_reveals_everything_when_m_s_is_zero():
    model = cnn_model(length=8)
    x_t = torch.full((50, 8), model.mask_index)
    x_t[:, 3] = 1
    with torch.no_grad():
        x_s = model.step(x_t, model.denoise(x_t, torch.tensor(0.1)), 0.1, 0.0, gen(7))
    assert (x_s != model.mask_index).all() and (x_s[:, 3] == 1).all()


def _outcomes(length: int, base: int = 3) -> torch.Tensor:
    return all_states(base, length)


@pytest.mark.parametrize("m_t,m_s", [(1.0, 0.5), (0.7, 0.2), (0.4, 0.0)])
def test_step_log_prob_normalised_over_all_outcomes(m_t, m_s):
    """sum over every x_s in {A, B, mask}^L of exp(step_log_prob(x_t -> x_s)) = 1 for every x_t,
    impossible outcomes (a changed unmasked token) included: they must get probability 0."""
    model = table_model(length=2)
    states = _outcomes(2)  # 9 states
    x_t = states.repeat_interleave(len(states), 0)
    x_s = states.repeat(len(states), 1)
    log_x0 = model.denoise(x_t, torch.tensor(0.5))
    lp = model.step_log_prob(x_t, x_s, log_x0, m_t, m_s).view(9, 9)
    torch.testing.assert_close(lp.double().exp().sum(-1), torch.ones(9, dtype=torch.float64), atol=1e-6, rtol=0)
    changed = ((x_t != TOY.mask_index) & (x_s != x_t)).any(-1).view(9, 9)
    assert torch.isneginf(lp[changed]).all()
    # per-sequence (B,) mask probabilities give the same values as scalars
    lp_rows = model.step_log_prob(x_t, x_s, log_x0, torch.full((81,), m_t), torch.full((81,), m_s))
    torch.testing.assert_close(lp_rows.view(9, 9), lp)


@pytest.mark.parametrize("start", ["MM", "AM"])
def test_step_log_prob_matches_empirical_frequencies(start):
    model = table_model(length=2, seed=3)
    M = TOY.mask_index
    state = torch.tensor([M if c == "M" else TOY.letters.index(c) for c in start])
    n = 40000
    x_t = state.repeat(n, 1)
    m_t, m_s = 0.8, 0.3
    with torch.no_grad():
        log_x0 = model.denoise(x_t, torch.tensor(0.8))
        x_s = model.step(x_t, log_x0, m_t, m_s, gen(8))
        outcomes = _outcomes(2)
        lp = model.step_log_prob(state.repeat(9, 1), outcomes, log_x0[:9], m_t, m_s).double()
    codes = (x_s * torch.tensor([1, 3])).sum(-1)
    counts = torch.bincount(codes, minlength=9).double()
    assert (counts[torch.isneginf(lp)] == 0).all()
    ok = ~torch.isneginf(lp)
    expected = lp[ok].exp() * n
    chi2 = ((counts[ok] - expected) ** 2 / expected).sum().item()
    assert chi2 < stats.chi2.ppf(0.9999, df=int(ok.sum()) - 1)
    # a specific outcome: both (or the one) masked positions revealed as "B"
    target = torch.tensor([1, 1]) if start == "MM" else torch.tensor([0, 1])
    code = int((target * torch.tensor([1, 3])).sum())
    freq = counts[code].item() / n
    p = lp[code].exp().item()
    assert abs(math.log(freq) - lp[code].item()) < 5 * math.sqrt((1 - p) / (n * p))


def test_step_log_prob_is_differentiable():
    model = table_model(length=3)
    x_t = torch.full((4, 3), TOY.mask_index)
    with torch.no_grad():
        x_s = model.step(x_t, model.denoise(x_t, torch.tensor(1.0)), 1.0, 0.3, gen(9))
    lp = model.step_log_prob(x_t, x_s, model.denoise(x_t, torch.tensor(1.0)), 1.0, 0.3)
    lp.sum().backward()
    assert model.backbone.table.grad is not None and torch.isfinite(model.backbone.table.grad).all()


# ----------------------------------------------------------------------------- sampler
@pytest.mark.parametrize("kind", sorted(TINY))
@pytest.mark.parametrize("steps", [1, 3, 40])  # 40 > length
def test_samples_are_clean(kind, steps):
    model = TINY[kind](length=12)
    x = model.sample(5, steps=steps, generator=gen(10))
    assert x.shape == (5, 12) and x.dtype == torch.long
    assert ((x >= 0) & (x < 4)).all()
    assert len(DNA.decode(x)) == 5


@pytest.mark.parametrize("kind", sorted(TINY))
def test_sampler_seeded_reproducibility(kind):
    model = TINY[kind](length=12)
    a = model.sample(6, steps=8, generator=gen(11))
    b = model.sample(6, steps=8, generator=gen(11))
    c = model.sample(6, steps=8, generator=gen(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


class CallCounter:
    def __init__(self, module: nn.Module):
        self.calls = 0
        module.register_forward_hook(self)

    def __call__(self, *args):
        self.calls += 1


@pytest.mark.parametrize("make", [cnn_model, transformer_model, table_model], ids=["cnn", "transformer", "table"])
def test_cached_and_uncached_sampling_identical(make):
    model = make(length=6) if make is not table_model else make(length=3)
    counter = CallCounter(model.backbone)
    steps = 64
    cached = model.sample(8, steps=steps, generator=gen(13), use_cache=True)
    n_cached = counter.calls
    counter.calls = 0
    plain = model.sample(8, steps=steps, generator=gen(13), use_cache=False)
    assert torch.equal(cached, plain)
    assert counter.calls == steps
    assert n_cached < steps  # many steps change nothing when steps >> length


def test_time_conditioned_backbone_is_never_cached():
    model = table_model(length=3, time_conditioned=True)
    counter = CallCounter(model.backbone)
    a = model.sample(4, steps=32, generator=gen(14), use_cache=True)
    assert counter.calls == 32
    assert torch.equal(a, model.sample(4, steps=32, generator=gen(14), use_cache=False))


@pytest.mark.parametrize("steps", [1, 5, 20])
def test_trajectory(steps):
    model = cnn_model(length=8)
    traj = model.sample(5, steps=steps, generator=gen(15), record=True)
    assert isinstance(traj, Trajectory)
    assert traj.states.shape == (steps + 1, 5, 8) and traj.steps == steps
    M = model.mask_index
    assert (traj.states[0] == M).all()
    assert (traj.final != M).all()
    for k in range(steps):
        fixed = traj.states[k] != M
        assert torch.equal(traj.states[k + 1][fixed], traj.states[k][fixed])  # once unmasked, fixed
    times, mask_probs = model.grid(steps)
    torch.testing.assert_close(traj.times, times)
    torch.testing.assert_close(traj.mask_probs, mask_probs)
    # recording does not change what is sampled
    assert torch.equal(traj.final, model.sample(5, steps=steps, generator=gen(15)))
    # the sampler's own completions and transition log-probabilities, as a fresh forward gives them
    with torch.no_grad():
        for k in range(steps):
            log_x0 = model.denoise(traj.states[k], traj.times[k].float())
            assert torch.equal(traj.x0_hat[k], log_x0.argmax(-1))
            assert torch.equal(traj.step_log_probs[k],
                               model.revealed_log_prob(traj.states[k], traj.states[k + 1], log_x0))


def test_sample_start_and_batches():
    model = cnn_model(length=8)
    M = model.mask_index
    start = torch.full((10, 8), M)
    start[:, 2] = 3
    start[:, 5] = 0
    x = model.sample(10, steps=6, generator=gen(16), start=start)
    assert (x[:, 2] == 3).all() and (x[:, 5] == 0).all() and (x != M).all()
    xb = model.sample(10, steps=6, generator=gen(16), start=start, batch_size=4)
    assert xb.shape == (10, 8) and (xb[:, 2] == 3).all() and (xb[:, 5] == 0).all() and (xb != M).all()
    assert model.sample(10, steps=6, generator=gen(17), batch_size=3).shape == (10, 8)


# ----------------------------------------------------------------- exact toy likelihoods
TOY_T = 3


def exact_chain(model: MaskedDiffusion, steps: int) -> torch.Tensor:
    """Distribution over all (V+1)^L states after the T-step sampler, by dynamic programming with
    step_log_prob. Also checks that every row of every transition matrix sums to 1."""
    base, L = model.alphabet.size + 1, model.length
    states = all_states(base, L)
    S = len(states)
    times, m = model.grid(steps)
    dist = torch.zeros(S, dtype=torch.float64)
    dist[-1] = 1.0  # all-mask is the last state in table order
    assert (states[-1] == model.mask_index).all()
    x_t = states.repeat_interleave(S, 0)
    x_s = states.repeat(S, 1)
    with torch.no_grad():
        for k in range(steps):
            log_x0 = model.denoise(states, times[k].float()).repeat_interleave(S, 0)
            P = model.step_log_prob(x_t, x_s, log_x0, float(m[k]), float(m[k + 1])).double().exp().view(S, S)
            torch.testing.assert_close(P.sum(-1), torch.ones(S, dtype=torch.float64), atol=1e-6, rtol=0)
            dist = dist @ P
    return dist


def exact_elbo(model: MaskedDiffusion, x0: torch.Tensor, steps: int) -> torch.Tensor:
    """sum_k sum_{mask patterns} q(pattern) (m_k - m_{k+1}) / m_k sum_{masked l} log p(x0_l | x_k)."""
    L = model.length
    patterns = all_states(2, L).bool()  # (2^L, L)
    times, m = model.grid(steps)
    n, P = len(x0), len(patterns)
    xk = x0.repeat_interleave(P, 0).clone()
    pat = patterns.repeat(n, 1)
    xk[pat] = model.mask_index
    total = torch.zeros(n, dtype=torch.float64)
    with torch.no_grad():
        for k in range(steps):
            lp = model.denoise(xk, times[k].float()).gather(-1, x0.repeat_interleave(P, 0).unsqueeze(-1)).squeeze(-1)
            lp = torch.where(pat, lp, torch.zeros_like(lp)).sum(-1).double()
            j = pat.sum(-1).double()
            q = m[k] ** j * (1 - m[k]) ** (L - j)
            total += ((m[k] - m[k + 1]) / m[k] * (q * lp)).view(n, P).sum(-1)
    return total


def clean_states(model: MaskedDiffusion) -> torch.Tensor:
    return all_states(model.alphabet.size, model.length)


def codes_of(x: torch.Tensor, base: int) -> torch.Tensor:
    return (x * base ** torch.arange(x.shape[1])).sum(-1)


@pytest.mark.parametrize("schedule", [LogLinearSchedule(), CosineSchedule()], ids=repr)
def test_exact_sample_distribution(schedule):
    model = table_model(length=3, schedule=schedule, seed=1)
    dist = exact_chain(model, TOY_T)
    assert abs(dist.sum().item() - 1) < 1e-6  # step_log_prob is float32
    clean = clean_states(model)
    clean_codes = codes_of(clean, 3)
    masked_mass = dist.sum() - dist[clean_codes].sum()
    assert masked_mass.item() == 0  # the chain always ends clean
    p = dist[clean_codes]
    n = 20000
    x = model.sample(n, steps=TOY_T, generator=gen(18))
    counts = torch.bincount(codes_of(x, 2), minlength=8).double()[codes_of(clean, 2)]
    expected = p * n
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < stats.chi2.ppf(0.9999, df=7), (counts, expected)


@pytest.mark.parametrize("schedule", [LogLinearSchedule(), CosineSchedule()], ids=repr)
def test_exact_elbo_bounds_and_monte_carlo(schedule):
    model = table_model(length=3, schedule=schedule, seed=2)
    clean = clean_states(model)
    log_p = exact_chain(model, TOY_T)[codes_of(clean, 3)].log()
    bound = exact_elbo(model, clean, TOY_T)
    assert (bound <= log_p + 1e-6).all(), (bound, log_p)
    assert (bound < log_p - 1e-4).any()  # a real gap for this non-factorised model
    reps = 3000
    x0 = clean.repeat_interleave(reps, 0)
    for samples, seed in ((None, 19), (2, 20)):
        est = model.elbo(x0, steps=TOY_T, samples=samples, generator=gen(seed), batch_size=8192).view(8, reps)
        se = est.std(-1) / math.sqrt(reps)
        assert ((est.mean(-1) - bound).abs() <= 5 * se + 1e-4).all(), (samples, est.mean(-1), bound, se)


def test_exact_elbo_with_one_step_is_factorised_log_likelihood():
    """T = 1: x_1 is all-mask, so the ELBO is sum_l log p(x0_l | all-mask) exactly (and elbo() is
    deterministic)."""
    model = table_model(length=3, seed=4)
    clean = clean_states(model)
    allmask = torch.full((1, 3), TOY.mask_index)
    lp = model.denoise(allmask, torch.tensor(1.0))[0]
    expected = torch.stack([lp[torch.arange(3), c].sum() for c in clean]).double()
    torch.testing.assert_close(exact_elbo(model, clean, 1), expected)
    torch.testing.assert_close(model.elbo(clean, steps=1), expected)


# ---------------------------------------------------------------------- continuous loss
@pytest.mark.parametrize("kind", sorted(TINY))
def test_loss_finite_positive_with_gradients(kind):
    model = TINY[kind](length=12)
    x0 = torch.randint(0, 4, (16, 12), generator=gen(21))
    loss = model.loss(x0, gen(22))
    assert loss.shape == (16,) and torch.isfinite(loss).all() and (loss >= 0).all() and loss.sum() > 0
    loss.mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    torch.testing.assert_close(model.loss(x0, gen(22)), loss.detach())  # seeded


def test_loss_matches_fine_discrete_nelbo():
    """Mean continuous-time NELBO over many draws ~ the exact T=256 discrete NELBO (the two differ by
    O(1/T) and by the t_min / eps truncation), on the toy table model."""
    model = table_model(length=3, seed=5)
    clean = clean_states(model)
    nelbo = -exact_elbo(model, clean, 256)
    reps = 20000
    with torch.no_grad():
        # interleave the x0s: loss() stratifies t along the batch, so each x0 sees the whole of [t_min, 1]
        loss = model.loss(clean.repeat(reps, 1), gen(23)).double().view(reps, 8)
    se = loss.std(0) / math.sqrt(reps)
    assert ((loss.mean(0) - nelbo).abs() <= 5 * se + 0.01 * nelbo).all(), (loss.mean(0), nelbo, se)
    overall_se = loss.mean(1).std() / math.sqrt(reps)
    assert abs(loss.mean() - nelbo.mean()) <= 4 * overall_se + 0.01 * nelbo.mean()


# ------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("kind", sorted(TINY))
@pytest.mark.parametrize("schedule", [LogLinearSchedule(eps=0.01), CosineSchedule()], ids=repr)
def test_model_folder_round_trip(tmp_path, kind, schedule):
    model = TINY[kind](length=10, schedule=schedule)
    model.metadata = {"note": "x", "steps": 3}
    path = tmp_path / "sub" / "model"
    model.save_pretrained(path)
    assert sorted(os.listdir(path.parent)) == ["model"]  # no temporary files left behind
    assert sorted(os.listdir(path)) == ["config.json", "model.safetensors"]
    config = json.loads((path / "config.json").read_text())
    assert config["weights"]["sha256"] == model.weights_sha256() == sha256_file(path / "model.safetensors")
    again = MaskedDiffusion.from_pretrained(path)
    assert again.schedule == schedule and again.length == 10 and again.alphabet == DNA
    assert again.metadata == model.metadata and MaskedDiffusion.load(path).length == 10
    x_t = torch.randint(0, 5, (4, 10), generator=gen(24))
    with torch.no_grad():
        torch.testing.assert_close(again.denoise(x_t, torch.tensor(0.3)), model.denoise(x_t, torch.tensor(0.3)),
                                   rtol=0, atol=0)
    model.save_pretrained(path)  # replacing a folder leaves nothing else behind
    assert sorted(os.listdir(path.parent)) == ["model"]
    # a run checkpoint (a state file with its hash) holding the model also loads
    save_state({"model": {**model.spec(), "state_dict": model.state_dict()}, "step": 5}, tmp_path / "t.pt")
    assert MaskedDiffusion.load(tmp_path / "t.pt").length == 10


def test_model_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        MaskedDiffusion.load(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="no config.json"):
        MaskedDiffusion.load(tmp_path)
    save_state({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a vidd masked-diffusion model"):
        MaskedDiffusion.load(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello, not a checkpoint")
    with pytest.raises(CheckpointError, match="text.pt.*truncated or corrupted"):
        MaskedDiffusion.load(tmp_path / "text.pt")
    spec = cnn_model().spec()
    spec["backbone"] = {**spec["backbone"], "kind": "nope"}
    with pytest.raises(CheckpointError, match="unknown backbone"):
        MaskedDiffusion.from_state({**spec, "state_dict": {}})
    model = cnn_model()
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["backbone"]["hidden"] += 1
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not match"):
        MaskedDiffusion.from_pretrained(tmp_path / "m")


def test_a_vidd_01_pt_model_loads_only_when_trusted(tmp_path):
    model = cnn_model()
    legacy = tmp_path / "old.pt"
    torch.save({**model.spec(), "format": LEGACY_FORMAT, "state_dict": model.state_dict()}, legacy)
    with pytest.raises(CheckpointError, match="no content hash.*--trust-checkpoint"):
        MaskedDiffusion.load(legacy)
    assert MaskedDiffusion.load(legacy, trust=True).weights_sha256() == model.weights_sha256()


def test_atomic_save_failure_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    atomic_torch_save({"a": 1}, path)

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_torch_save({"a": 2}, path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]
    assert torch.load(path) == {"a": 1}  # the previous file is untouched


def test_backbone_config_errors():
    with pytest.raises(ValueError, match="odd"):
        DilatedCNN(DilatedCNN.Config(4, hidden=8, stacks=1, dilations=[1], kernel=4))
    with pytest.raises(ValueError, match="unknown backbone"):
        Backbone.from_spec({"kind": "nope"})


# --------------------------------------------------------------------------- alphabets
@pytest.mark.parametrize("alphabet", [DNA, PROTEIN, TOY], ids=lambda a: a.name)
def test_alphabet_round_trip(alphabet):
    g = gen(25)
    seqs = ["".join(alphabet.letters[i] for i in torch.randint(0, alphabet.size, (7,), generator=g)) for _ in range(5)]
    tokens = alphabet.encode(seqs)
    assert tokens.shape == (5, 7) and tokens.dtype == torch.long
    assert alphabet.decode(tokens) == seqs
    assert alphabet.mask_index == alphabet.size == len(alphabet.letters)
    assert alphabet.encode([]).shape == (0, 0)


def test_alphabet_errors():
    with pytest.raises(SequenceError, match=r"'X' at position 3") as e:
        DNA.encode(["ACGT", "ACXT"])
    assert "sequence 2" in str(e.value) and isinstance(e.value, UserError) and isinstance(e.value, ValueError)
    with pytest.raises(SequenceError, match="sequence 2: length 2, expected 3"):
        DNA.encode(["ACG", "AC"])
    with pytest.raises(SequenceError, match="length 3, expected 5"):
        DNA.encode(["ACG"], length=5)
    with pytest.raises(SequenceError, match="masked"):
        DNA.decode(torch.tensor([[0, 1, DNA.mask_index]]))
