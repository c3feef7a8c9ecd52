"""Order-agnostic masked diffusion with in-filling: the chain of EvoDiff OA-DM and of BERT-style in-filling.

It starts from a *template*: fixed positions hold their letters and are never masked or changed, designable
positions start masked. On a T-step grid, step k reveals exactly K = ceil(n / (T - k)) of the n still-masked
positions, chosen uniformly at random, each filled with a letter drawn from the model's marginal at that
position; the last step reveals the rest. (With the linear grid m_k = 1 - k / T this is
K = ceil(n (m_k - m_{k+1}) / m_k), which is how `step` computes it from the two mask levels.)

The positions are chosen independently of the model, so in log p(x_s | x_t) their choice is the
constant -log C(n, K); `revealed_log_prob` (the model-dependent part that every fine-tuning objective
differentiates) is the same sum of log p(x_0 = x_s | x_t) over revealed positions as in MDLM, and
`step_log_prob` adds the constant (or is -inf for a transition the chain cannot make). The trainer,
VIDD and the baselines therefore run on these models unchanged. `elbo` / `loss` are the masked-diffusion
bounds with only designable positions noised (each independently, with probability m(t) = t): the
continuous-time order-agnostic bound, used for naturalness scores, not the exact bound of the K-per-step
chain.

The chain runs on any backbone; external masked LMs (`vidd.diffusion.lm_backbone`) ignore time, as
OA-DM models do, and `vidd.diffusion.loaders` builds such models from local files.
"""

from __future__ import annotations

import math

import torch

from vidd.core.alphabets import Alphabet
from vidd.diffusion.backbones import Backbone
from vidd.diffusion.masked import MaskedDiffusion, gumbel_argmax, uniform
from vidd.diffusion.schedule import LinearSchedule, NoiseSchedule


class OrderAgnosticDiffusion(MaskedDiffusion):
    """Order-agnostic masked diffusion with in-filling (module docstring): a template fixes some positions."""

    chain = "order-agnostic"

    def __init__(self, backbone: Backbone, alphabet: Alphabet, length: int, schedule: NoiseSchedule | None = None,
                 template: torch.Tensor | None = None):
        super().__init__(backbone, alphabet, length, schedule or LinearSchedule())
        if template is None:
            template = torch.full((length,), alphabet.mask_index, dtype=torch.long)
        template = torch.as_tensor(template, dtype=torch.long)
        if template.shape != (length,) or template.min() < 0 or template.max() > alphabet.mask_index:
            raise ValueError(f"template: expected {length} token ids in [0, {alphabet.mask_index}], "
                             f"got shape {tuple(template.shape)}")
        self.register_buffer("template", template, persistent=False)

    @property
    def designable(self) -> torch.Tensor:
        """(L,) bool: the positions the chain generates (masked in the template)."""
        return self.template == self.mask_index

    def initial_state(self, n: int) -> torch.Tensor:
        return self.template.to(self.device).expand(n, -1).clone()

    @staticmethod
    def reveal_counts(masked: torch.Tensor, reveal: torch.Tensor) -> torch.Tensor:
        """K per row: ceil(n * reveal) of the n masked positions (reveal = (m_t - m_s) / m_t, (B, 1) float64)."""
        n = masked.sum(-1, keepdim=True).double()
        return torch.minimum(torch.ceil(n * reveal - 1e-9).clamp_min(0), n).long()

    def step(self, x_t, log_x0, m_t, m_s, generator=None) -> torch.Tensor:
        """Reveal exactly K uniformly chosen masked positions, each drawn from the model's marginal."""
        mt, ms = self._per_row(m_t, x_t), self._per_row(m_s, x_t)
        masked = x_t == self.mask_index
        k = self.reveal_counts(masked, (mt - ms) / mt)
        keys = torch.where(masked, uniform(x_t.shape, generator, x_t.device, torch.float64),
                           torch.full(x_t.shape, 2.0, dtype=torch.float64, device=x_t.device))
        rank = keys.argsort(-1).argsort(-1)  # rank of each position among the row's random keys
        chosen = masked & (rank < k)
        return torch.where(chosen, gumbel_argmax(log_x0, generator), x_t)

    def step_log_prob(self, x_t, x_s, log_x0, m_t, m_s) -> torch.Tensor:
        """log p(x_s | x_t) = sum over revealed positions of log p(x_0 = x_s | x_t) - log C(n, K); -inf if x_s
        reveals other than K positions or changes an unmasked one."""
        mt, ms = self._per_row(m_t, x_t), self._per_row(m_s, x_t)
        masked = x_t == self.mask_index
        k = self.reveal_counts(masked, (mt - ms) / mt).squeeze(-1)
        n = masked.sum(-1)
        revealed = (masked & (x_s != self.mask_index)).sum(-1)
        log_choose = torch.lgamma(n + 1.0) - torch.lgamma(k + 1.0) - torch.lgamma(n - k + 1.0)
        lp = self.revealed_log_prob(x_t, x_s, log_x0) - log_choose.to(log_x0.dtype)
        impossible = (revealed != k) | (~masked & (x_s != x_t)).any(-1)
        return torch.where(impossible, torch.full_like(lp, float("-inf")), lp)

    def noise(self, x0: torch.Tensor, mask_prob: torch.Tensor, generator=None) -> torch.Tensor:
        """q(x_t | x_0) on the designable positions only; fixed positions are never masked."""
        noised = super().noise(x0, mask_prob, generator)
        return torch.where(self.designable.to(x0.device), noised, x0)

    def spec(self) -> dict:
        return {**super().spec(), "template": self.template.tolist()}

    @classmethod
    def from_spec(cls, spec: dict) -> OrderAgnosticDiffusion:
        model = super().from_spec(spec)  # the backbone, alphabet, length and schedule
        model.template = torch.tensor(spec["template"], dtype=torch.long)
        return model


def template_tokens(alphabet: Alphabet, sequence: str, designable) -> torch.Tensor:
    """Token ids of `sequence` with the `designable` positions (indices, a slice or a bool mask) masked."""
    tokens = alphabet.encode([sequence])[0]
    mask = torch.zeros(len(tokens), dtype=torch.bool)
    mask[designable] = True
    return torch.where(mask, torch.full_like(tokens, alphabet.mask_index), tokens)


def reveal_schedule(designable: int, steps: int) -> list[int]:
    """The K of each step of the OA chain for `designable` masked positions and `steps` steps (documentation
    and tests): K_k = ceil(n_k / (steps - k))."""
    out, n = [], designable
    for k in range(steps):
        reveal = math.ceil(n / (steps - k) - 1e-9)
        out.append(reveal)
        n -= reveal
    return out
