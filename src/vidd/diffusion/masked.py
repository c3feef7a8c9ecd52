"""Masked (absorbing-state) discrete diffusion, as in MDLM, with the SUBS parameterisation.

Discrete-time chain used for sampling, likelihoods and fine-tuning: a grid of T steps with
mask probabilities m_0 = 1 > m_1 > ... > m_T = 0 (m_k = schedule.move_chance(t_k) inside).
The chain starts fully masked and every position is resolved by the model by the last step.
One reverse step k (x_k -> x_{k+1}) keeps unmasked tokens and, for each masked position,
unmasks it to letter v with probability (m_k - m_{k+1}) / m_k * p(x_0 = v | x_k) and leaves it
masked with probability m_{k+1} / m_k.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vidd.core.alphabets import Alphabet
from vidd.core.safefiles import CheckpointError, load_state, read_folder, weights_sha256, write_folder
from vidd.core.version import __version__
from vidd.diffusion.backbones import Backbone
from vidd.diffusion.schedule import LogLinearSchedule, NoiseSchedule

#: `format` of a model folder's config.json and of the model in a run checkpoint
MODEL_FORMAT = "vidd-masked-diffusion-2"
#: `format` of vidd 0.1's pickled `.pt` models (read only when trusted)
LEGACY_FORMAT = "vidd-masked-diffusion-1"
#: modules defining vidd's other chains, imported when a checkpoint names one
BUILTIN_CHAINS = {"order-agnostic": "vidd.diffusion.order_agnostic"}


@dataclass
class Trajectory:
    """States x_0..x_T of a reverse chain (index 0: fully masked, index T: clean samples)."""

    states: torch.Tensor  # (T + 1, B, L) long
    times: torch.Tensor  # (T + 1,) denoiser times, 1 -> 0
    mask_probs: torch.Tensor  # (T + 1,) m_k, 1 -> 0
    #: (T, B, L) argmax of the sampler's own log p(x_0 | x_k) at each state k < T (clean positions carried
    #: over), or None: what a value estimate of x_k by the sampling model needs, without another forward
    x0_hat: torch.Tensor | None = None
    #: (T, B) the model-dependent part of the sampler's own log p(x_{k+1} | x_k) (`revealed_log_prob`), or None
    step_log_probs: torch.Tensor | None = None

    @property
    def steps(self) -> int:
        return self.states.shape[0] - 1

    @property
    def final(self) -> torch.Tensor:
        return self.states[-1]


def uniform(shape, generator: torch.Generator | None, device, dtype=torch.float32) -> torch.Tensor:
    """U(0, 1) draws from `generator` (on its own device, e.g. a CPU generator for a CUDA model, so a
    seed means the same numbers everywhere), moved to `device`."""
    if generator is None:
        return torch.rand(shape, dtype=dtype, device=device)
    return torch.rand(shape, generator=generator, dtype=dtype, device=generator.device).to(device)


def gumbel_argmax(log_probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Sample from categorical(log_probs) along the last axis (Gumbel-max in float64)."""
    u = uniform(log_probs.shape, generator, log_probs.device, torch.float64)
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
    return (log_probs.double() + gumbel).argmax(-1)


class MaskedDiffusion(nn.Module):
    #: the reverse chain, stored in checkpoints ("masked": every masked position is revealed independently);
    #: subclasses with another chain register under their own name and are rebuilt from their checkpoints
    chain: str = "masked"
    chains: dict[str, type[MaskedDiffusion]] = {}
    #: dtype of the autocast region around the network's forward pass (mixed precision); None: no autocast.
    #: Set per model by the trainer (vidd.training.copies), never stored in checkpoints.
    autocast_dtype: torch.dtype | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "chain" in cls.__dict__:  # a subclass that keeps its parent's chain does not replace it
            MaskedDiffusion.chains[cls.chain] = cls

    def __init__(self, backbone: Backbone, alphabet: Alphabet, length: int,
                 schedule: NoiseSchedule | None = None):
        super().__init__()
        self.backbone = backbone
        self.alphabet = alphabet
        self.length = length
        self.schedule = schedule or LogLinearSchedule()
        self.metadata: dict = {}

    # ------------------------------------------------------------------ basics
    @property
    def mask_index(self) -> int:
        return self.alphabet.mask_index

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def initial_state(self, n: int) -> torch.Tensor:
        """The chain's start x_T for n samples (n, L): every position masked (in-filling models keep their
        fixed positions here)."""
        return torch.full((n, self.length), self.mask_index, dtype=torch.long, device=self.device)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log p(x_0 | x_t): (B, L, V) over letters; unmasked positions are carried over (SUBS).
        t may live on another device than x_t (the chain's time grid stays on the CPU)."""
        t = t.to(x_t.device)
        if t.dim() == 0:
            t = t.expand(x_t.shape[0])
        return self._subs(torch.log_softmax(self.network(x_t, t).float(), dim=-1), x_t)

    def denoise_soft(self, onehot: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """`denoise` of (straight-through / relaxed) one-hot states (B, L, V + 1) float, differentiable
        through the input. SUBS carry-over follows the hard state argmax(onehot): positions whose argmax is
        a letter are carried over (one-hot, no gradient), masked ones get the network's prediction."""
        t = t.to(onehot.device)
        if t.dim() == 0:
            t = t.expand(onehot.shape[0])
        log_probs = torch.log_softmax(self.network(onehot, t).float(), dim=-1)
        return self._subs(log_probs, onehot.argmax(-1))

    def network(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The backbone's logits, under autocast at `autocast_dtype` when it is set."""
        if self.autocast_dtype is None:
            return self.backbone(x, t)
        with torch.autocast(x.device.type, dtype=self.autocast_dtype):
            return self.backbone(x, t)

    def _subs(self, log_probs: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """SUBS: keep the network's log p(x_0 | x_t) at masked positions, a one-hot at unmasked ones."""
        masked = (x_t == self.mask_index).unsqueeze(-1)
        carried = torch.full_like(log_probs, float("-inf"))
        carried.scatter_(-1, x_t.clamp(max=self.alphabet.size - 1).unsqueeze(-1), 0.0)
        return torch.where(masked, log_probs, carried)

    def noise(self, x0: torch.Tensor, mask_prob: torch.Tensor, generator=None) -> torch.Tensor:
        """Sample x_t ~ q(x_t | x_0): each token masked independently with probability mask_prob (B,) or scalar."""
        mask_prob = torch.as_tensor(mask_prob, device=x0.device, dtype=torch.float32)
        if mask_prob.dim() == 1:
            mask_prob = mask_prob[:, None]
        u = uniform(x0.shape, generator, x0.device)
        return torch.where(u < mask_prob, torch.full_like(x0, self.mask_index), x0)

    def grid(self, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Denoiser times t_k (1 -> 0) and mask probabilities m_k (m_0 = 1, m_T = 0) of a T-step chain."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        times = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
        mask_probs = self.schedule.move_chance(times).clamp(0.0, 1.0)
        mask_probs[0], mask_probs[-1] = 1.0, 0.0
        return times, mask_probs

    # ------------------------------------------------------------ reverse step
    @staticmethod
    def _per_row(value, x: torch.Tensor) -> torch.Tensor:
        """A scalar or per-sequence (B,) quantity as a float64 (B, 1) column."""
        return torch.as_tensor(value, dtype=torch.float64, device=x.device).reshape(-1, 1).expand(x.shape[0], 1)

    def step(self, x_t, log_x0, m_t, m_s, generator=None) -> torch.Tensor:
        """One reverse transition x_t -> x_s given log p(x_0 | x_t); m_t, m_s scalars or (B,)."""
        reveal = (self._per_row(m_t, x_t) - self._per_row(m_s, x_t)) / self._per_row(m_t, x_t)
        u = uniform(x_t.shape, generator, x_t.device, torch.float64)
        letters = gumbel_argmax(log_x0, generator)
        return torch.where((x_t == self.mask_index) & (u < reveal), letters, x_t)

    def revealed_log_prob(self, x_t, x_s, log_x0) -> torch.Tensor:
        """sum over positions masked in x_t and unmasked in x_s of log p(x_0 = x_s | x_t), per sequence.

        The part of log p(x_s | x_t) that depends on the model; what fine-tuning objectives maximise.
        """
        revealed = (x_t == self.mask_index) & (x_s != self.mask_index)
        token_lp = log_x0.gather(-1, x_s.clamp(max=self.alphabet.size - 1).unsqueeze(-1)).squeeze(-1)
        return torch.where(revealed, token_lp, torch.zeros_like(token_lp)).sum(-1)

    def step_log_prob(self, x_t, x_s, log_x0, m_t, m_s) -> torch.Tensor:
        """log p(x_s | x_t) per sequence (B,), differentiable through log_x0.

        Newly unmasked positions contribute log p(x_0 = x_s | x_t) + log((m_t - m_s) / m_t);
        positions that stay masked contribute log(m_s / m_t); carried-over tokens contribute 0;
        a changed unmasked token (impossible under the chain) makes the whole value -inf.
        """
        masked = x_t == self.mask_index
        n_revealed = (masked & (x_s != self.mask_index)).sum(-1, keepdim=True)
        n_stay = (masked & (x_s == self.mask_index)).sum(-1, keepdim=True)
        mt, ms = self._per_row(m_t, x_t), self._per_row(m_s, x_t)
        const = n_revealed * torch.log((mt - ms) / mt) + torch.where(
            n_stay > 0, n_stay * torch.log(ms / mt), torch.zeros_like(mt))
        lp = self.revealed_log_prob(x_t, x_s, log_x0) + const.squeeze(-1).to(log_x0.dtype)
        impossible = (~masked & (x_s != x_t)).any(-1)
        return torch.where(impossible, torch.full_like(lp, float("-inf")), lp)

    # ----------------------------------------------------------------- sampler
    @torch.no_grad()
    def sample(self, n: int, steps: int = 128, generator=None, record: bool = False,
               use_cache: bool = True, batch_size: int | None = None, start: torch.Tensor | None = None):
        """Ancestral sampling. Returns the clean samples (n, L), or a Trajectory if record=True.

        use_cache: when the backbone ignores time and no token changed since the previous
        step, reuse the previous denoiser output instead of calling the network again.
        start: optional (n, L) initial state (masked positions are generated, others kept).
        """
        if batch_size is not None and n > batch_size and not record:
            return torch.cat([
                self.sample(min(batch_size, n - i), steps, generator, False, use_cache,
                            start=None if start is None else start[i:i + batch_size])
                for i in range(0, n, batch_size)
            ])
        times, mask_probs = self.grid(steps)
        x = start.to(self.device) if start is not None else self.initial_state(n)
        states, completions, log_probs = ([x], [], []) if record else (None, None, None)
        cached = None
        for k in range(steps):
            if cached is None or not use_cache or self.backbone.time_conditioned:
                cached = self.denoise(x, times[k].float().to(self.device))
            x_next = self.step(x, cached, float(mask_probs[k]), float(mask_probs[k + 1]), generator)
            if record:
                completions.append(cached.argmax(-1))
                log_probs.append(self.revealed_log_prob(x, x_next, cached))
                states.append(x_next)
            if not torch.equal(x_next, x):
                cached = None
            x = x_next
        if record:
            return Trajectory(torch.stack(states), times, mask_probs, torch.stack(completions), torch.stack(log_probs))
        return x

    # ------------------------------------------------------------- likelihood
    def loss(self, x0: torch.Tensor, generator=None, t_min: float = 1e-3) -> torch.Tensor:
        """Continuous-time MDLM negative ELBO per sequence (B,), in nats; the training loss.

        t is drawn with a stratified (low-discrepancy) sampler over [t_min, 1].
        """
        b = x0.shape[0]
        offset = uniform((), generator, x0.device)
        u = (offset + torch.arange(b, device=x0.device) / b) % 1.0
        t = t_min + (1 - t_min) * u
        x_t = self.noise(x0, self.schedule.move_chance(t), generator)
        log_x0 = self.denoise(x_t, t)
        token_nll = -log_x0.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
        masked = x_t == self.mask_index
        return self.schedule.elbo_weight(t) * torch.where(masked, token_nll, torch.zeros_like(token_nll)).sum(-1)

    @torch.no_grad()
    def elbo(self, x0: torch.Tensor, steps: int = 128, samples: int | None = None,
             generator=None, batch_size: int = 256) -> torch.Tensor:
        """Discrete-time ELBO of the T-step chain, a lower bound on log p(x_0), per sequence (nats).

        ELBO = sum_k E_{x_k ~ q(.|x_0)} [ (m_k - m_{k+1}) / m_k * sum_{masked l} log p(x_0^l | x_k) ].
        samples=None evaluates every step once (one noised state per step, T forwards per
        sequence: the paper's App-Log-Lik); samples=S draws S stratified steps per sequence and
        rescales (unbiased, S forwards per sequence).
        """
        times, mask_probs = self.grid(steps)
        n = x0.shape[0]
        if samples is None:
            ks = torch.arange(steps).repeat(n, 1)  # (n, T)
            scale = 1.0
        else:
            offset = torch.randint(steps, (n, 1), generator=generator)
            ks = (offset + torch.arange(samples) * steps // samples) % steps
            scale = steps / samples
        weights = (mask_probs[ks] - mask_probs[ks + 1]) / mask_probs[ks]
        rows = torch.arange(n).repeat_interleave(ks.shape[1])
        flat_k, flat_w = ks.reshape(-1), weights.reshape(-1)
        total = torch.zeros(n, dtype=torch.float64)
        for i in range(0, rows.numel(), batch_size):
            r, k, w = rows[i:i + batch_size], flat_k[i:i + batch_size], flat_w[i:i + batch_size]
            x = x0[r].to(self.device)
            x_t = self.noise(x, mask_probs[k].float().to(self.device), generator)
            log_x0 = self.denoise(x_t, times[k].float().to(self.device))
            lp = log_x0.gather(-1, x.unsqueeze(-1)).squeeze(-1)
            lp = torch.where(x_t == self.mask_index, lp, torch.zeros_like(lp)).sum(-1).double().cpu()
            total.index_add_(0, r, w * lp)
        return total * scale

    # ------------------------------------------------------------ persistence
    def spec(self) -> dict:
        """What the model is, without its weights (a model folder's config.json)."""
        return {
            "format": MODEL_FORMAT,
            "chain": self.chain,
            "alphabet": self.alphabet.to_dict(),
            "length": self.length,
            "backbone": self.backbone.spec(),
            "schedule": self.schedule.to_dict(),
            "metadata": self.metadata,
        }

    def weights_sha256(self) -> str:
        """The sha256 of this model's weights (of the model.safetensors `save_pretrained` writes)."""
        return weights_sha256(self.state_dict())

    def save_pretrained(self, path: str | Path) -> None:
        """A model folder at `path`: config.json (the spec, the writer's vidd version, the weights' sha256)
        and model.safetensors; an existing folder there is replaced at once."""
        write_folder(path, {**self.spec(), "vidd_version": __version__}, self.state_dict())

    @classmethod
    def from_pretrained(cls, path: str | Path) -> MaskedDiffusion:
        """The model of a folder written by `save_pretrained` (its weights checked against their sha256)."""
        config, tensors = read_folder(path)
        return cls.from_state({**config, "state_dict": tensors}, where=str(path))

    @classmethod
    def from_state(cls, payload: dict, where: str = "checkpoint") -> MaskedDiffusion:
        """The model a spec with its `state_dict` describes (a model folder's contents, the `model` entry of
        a run checkpoint, or a vidd 0.1 `.pt` payload)."""
        if payload.get("format") not in (MODEL_FORMAT, LEGACY_FORMAT):
            raise CheckpointError(f"{where}: not a vidd masked-diffusion model (format {payload.get('format')!r})")
        chain = payload.get("chain", "masked")
        if chain not in MaskedDiffusion.chains and chain in BUILTIN_CHAINS:
            importlib.import_module(BUILTIN_CHAINS[chain])  # registers the chain
        if chain not in MaskedDiffusion.chains:
            raise CheckpointError(f"{where}: unknown chain {chain!r} (known: {sorted(MaskedDiffusion.chains)}); a "
                                  f"model class defined outside vidd must be imported before its models are loaded")
        try:
            model = MaskedDiffusion.chains[chain].from_spec(payload)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{where}: the model's config is incomplete or invalid ({type(e).__name__}: "
                                  f"{e})") from e
        model.metadata = payload.get("metadata", {})
        try:
            model.load_state_dict(payload["state_dict"])
        except RuntimeError as e:
            raise CheckpointError(f"{where}: the weights do not match the model's config: {e}") from e
        return model

    @classmethod
    def from_spec(cls, spec: dict) -> MaskedDiffusion:
        """A freshly initialised model of the shape a `spec()` describes (weights not loaded)."""
        return cls(Backbone.from_spec(spec["backbone"]), Alphabet(**spec["alphabet"]), spec["length"],
                   NoiseSchedule.from_dict(spec["schedule"]))

    @classmethod
    def load(cls, path: str | Path, map_location="cpu", trust: bool = False) -> MaskedDiffusion:
        """A model folder, or the model in a run checkpoint (`last.pt`, read safely and checked against its
        hash). A vidd 0.1 `.pt` model carries no hash and needs trust=True (the CLI's --trust-checkpoint); it is
        read by a restricted unpickler (tensors, containers and numpy values only) that runs no code."""
        path = Path(path)
        if path.is_dir():
            return cls.from_pretrained(path).to(map_location)
        payload = load_state(path, map_location, trust=trust)
        if not isinstance(payload, dict):
            raise CheckpointError(f"{path}: not a vidd masked-diffusion model (holds a {type(payload).__name__})")
        if "adapters" in payload:
            raise CheckpointError(f"{path}: a LoRA run's checkpoint holds adapters only; the run's model is "
                                  f"checkpoints/student/, written when the run ends")
        if "model" in payload:
            payload = payload["model"]  # a run checkpoint holding the model
        return cls.from_state(payload, where=str(path))


MaskedDiffusion.chains[MaskedDiffusion.chain] = MaskedDiffusion
