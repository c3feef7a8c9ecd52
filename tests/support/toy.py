"""Exact computations on enumerable toys (small alphabet and length)."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from vidd.core.alphabets import DNA
from vidd.diffusion.backbones import Backbone
from vidd.diffusion.masked import MaskedDiffusion
from vidd.diffusion.pretrain import ModelConfig


def all_states(model: MaskedDiffusion, with_mask: bool) -> torch.Tensor:
    """Every sequence of the model's length over the letters (and the mask token if with_mask)."""
    symbols = range(model.alphabet.size + (1 if with_mask else 0))
    return torch.tensor(list(itertools.product(symbols, repeat=model.length)), dtype=torch.long)


def transition_matrices(model: MaskedDiffusion, steps: int) -> list[torch.Tensor]:
    """The T-step sampler's transition matrices P_k[s, s'] = p(x_{k+1} = s' | x_k = s) over all partial
    states (`all_states(model, True)` order), float64; differentiable through the model."""
    states = all_states(model, with_mask=True)  # (S, L)
    n, length = states.shape
    v, mask = model.alphabet.size, model.mask_index
    times, mask_probs = model.grid(steps)
    src_masked = (states == mask)[:, None, :]  # (S, 1, L)
    same = states[:, None, :] == states[None, :, :]  # (S, S, L)
    dst_masked = (states == mask)[None, :, :]
    out = []
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
        out.append(factor.prod(-1))
    return out


def exact_sample_distribution(model: MaskedDiffusion, steps: int) -> torch.Tensor:
    """p(x_0) of the T-step ancestral sampler over all clean sequences (in `all_states(..., False)` order).

    Dynamic programming over the (V+1)^L partial states; differentiable through the model.
    """
    states = all_states(model, with_mask=True)
    mask = model.mask_index
    dist = torch.zeros(len(states), dtype=torch.float64)
    dist[(states == mask).all(-1).nonzero()[0, 0]] = 1.0
    for factor in transition_matrices(model, steps):
        dist = dist @ factor
    clean = ~(states == mask).any(-1)
    return dist[clean]


def exact_chain_kl(p: MaskedDiffusion, q: MaskedDiffusion, steps: int) -> float:
    """KL(p || q) between the T-step reverse chains of two models (whole trajectories): the sum over steps
    of E_{x_k ~ p} KL(p(. | x_k) || q(. | x_k)), by dynamic programming over all partial states."""
    states = all_states(p, with_mask=True)
    dist = torch.zeros(len(states), dtype=torch.float64)
    dist[(states == p.mask_index).all(-1).nonzero()[0, 0]] = 1.0
    total = 0.0
    for fp, fq in zip(transition_matrices(p, steps), transition_matrices(q, steps)):
        ratio = torch.where(fp > 0, fp * (fp.clamp_min(1e-300).log() - fq.clamp_min(1e-300).log()),
                            torch.zeros_like(fp))
        total += float(dist @ ratio.sum(-1))
        dist = dist @ fp
    return total


class ExactSoftValue:
    """The exact soft value v_k(x) = alpha log E_p[exp(r(x_0) / alpha) | x_k = x] of a model's T-step chain,
    by backward dynamic programming; called like a `ValueEstimator` (ctx, states, times) -> values."""

    def __init__(self, model: MaskedDiffusion, steps: int, reward, alpha: float):
        states = all_states(model, with_mask=True)
        clean = ~(states == model.mask_index).any(-1)
        r = torch.zeros(len(states), dtype=torch.float64)
        r[clean] = torch.tensor(reward(model.alphabet.decode(states[clean])), dtype=torch.float64)
        with torch.no_grad():
            mats = transition_matrices(model, steps)
        exp_v = torch.where(clean, torch.exp(r / alpha), torch.zeros_like(r))
        self.values = [alpha * exp_v.log()]
        for factor in reversed(mats):
            exp_v = factor @ exp_v
            self.values.insert(0, alpha * exp_v.log())
        self.times = model.grid(steps)[0].float()
        self.powers = (model.alphabet.size + 1) ** torch.arange(model.length - 1, -1, -1)

    #: the parts of the `ValueEstimator` interface VIDD's collect asks for: no learned network, no completions
    #: taken from the roll-in's forward
    learned = None

    def rollin_completions(self, ctx, traj, drawn_by, k, b):
        return None

    def reuses(self, ctx, model) -> bool:
        return False

    def __call__(self, ctx, x: torch.Tensor, t: torch.Tensor, known=None) -> np.ndarray:
        ks = (self.times[None, :] - t.float().cpu()[:, None]).abs().argmin(-1).tolist()
        index = (x.cpu() * self.powers).sum(-1).tolist()
        return np.array([float(self.values[k][i]) for k, i in zip(ks, index)])


# ------------------------------------------------------------------ small models and contexts
def toy_model(length: int = 4, seed: int = 0) -> MaskedDiffusion:
    """A tiny seeded transformer over DNA: small enough for exact computations at length <= 4."""
    torch.manual_seed(seed)
    return ModelConfig(backbone="transformer", hidden=32, layers=2, heads=2).build(DNA, length)



def g_reward(seqs):
    """#G + 1.5 if the sequence contains CG."""
    return [float(s.count("G")) + 1.5 * ("CG" in s) for s in seqs]


class PositionTable(Backbone):
    """Denoiser logits from a fixed (L, V) table, whatever the input state: a model whose predictions
    p(x_0^l | x_t) = softmax(table[l]) at masked positions are known exactly. With a `tilt` (L, V) the logits
    are table + t * tilt, a time-conditioned model."""

    def __init__(self, table: torch.Tensor, tilt: torch.Tensor | None = None):
        super().__init__()
        self.table = torch.nn.Parameter(torch.as_tensor(table, dtype=torch.float32).clone())
        self.time_conditioned = tilt is not None
        self.register_buffer("tilt", torch.zeros_like(self.table) if tilt is None else tilt.float().clone())

    def forward(self, tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b, length = tokens.shape[:2]
        logits = self.table[:length].unsqueeze(0).expand(b, -1, -1)
        if self.time_conditioned:
            logits = logits + t.float()[:, None, None] * self.tilt[:length]
        return logits


def table_model(length: int = 4, seed: int = 0, scale: float = 1.5, time_conditioned: bool = False) -> MaskedDiffusion:
    """A DNA model with a random position-wise logit table (PositionTable): distinct argmax letters per
    position for different seeds, and a spread distribution to sample from (optionally time-conditioned)."""
    from vidd.core.alphabets import DNA

    g = torch.Generator().manual_seed(seed)
    table = scale * torch.randn(length, DNA.size, generator=g)
    tilt = 4 * scale * torch.randn(length, DNA.size, generator=g) if time_conditioned else None
    return MaskedDiffusion(PositionTable(table, tilt), DNA, length)


def model_log_probs(model: MaskedDiffusion, t: float | None = None) -> torch.Tensor:
    """log p(x_0^l = v) (L, V) of a `table_model` (at time t if it is time-conditioned), computed from its table
    (not through `denoise`)."""
    logits = model.backbone.table.detach().double()
    if model.backbone.time_conditioned:
        logits = logits + float(t) * model.backbone.tilt.double()
    return torch.log_softmax(logits, dim=-1)


def fill_argmax(model: MaskedDiffusion, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
    """x with every masked position set to the table model's most likely letter there (at each row's time t
    for a time-conditioned model)."""
    if model.backbone.time_conditioned:
        best = torch.stack([model_log_probs(model, float(ti)).argmax(-1) for ti in t])
    else:
        best = model.backbone.table.detach().argmax(-1).expand_as(x)
    return torch.where(x == model.mask_index, best, x)


def make_context(student, rollout=None, pretrained=None, reward=g_reward, steps: int = 4, seed: int = 0,
                 **policy):
    from vidd.training.context import Context
    from vidd.rewards.counted import CountedReward, RewardPolicy

    return Context(student, rollout if rollout is not None else student,
                   pretrained if pretrained is not None else student,
                   CountedReward(reward, RewardPolicy(**policy)), torch.Generator().manual_seed(seed), steps)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def train(method, ctx, iterations: int, batch_size: int, lr: float, grad_clip: float = 1.0) -> list[dict]:
    """A minimal stand-in for the trainer's loop (no config, no evaluation): per iteration collect one
    batch, take one Adam step on the mean example loss, then the method's end-of-iteration hook.
    Returns each batch's statistics."""
    optimizer = torch.optim.Adam(ctx.student.parameters(), lr=lr)
    stats = []
    for i in range(iterations):
        ctx.iteration = i
        batch = method.collect(ctx, batch_size)
        optimizer.zero_grad(set_to_none=True)
        if batch.size:
            (method.example_loss(ctx, batch.examples).sum() / batch.size).backward()
            torch.nn.utils.clip_grad_norm_(ctx.student.parameters(), grad_clip)
            optimizer.step()
        method.end_of_iteration(ctx)
        stats.append(batch.stats)
    ctx.iteration = iterations
    return stats


def trio(model: MaskedDiffusion):
    """(student, roll-out, pretrained) as the trainer makes them: independent copies, only the student trains."""
    import copy

    pretrained = copy.deepcopy(model).eval()
    for p in pretrained.parameters():
        p.requires_grad_(False)
    rollout = copy.deepcopy(pretrained)
    student = copy.deepcopy(pretrained)
    for p in student.parameters():
        p.requires_grad_(True)
    return student, rollout, pretrained
