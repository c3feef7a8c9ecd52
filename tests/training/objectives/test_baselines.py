"""The paper's baselines (standard fine-tuning, DDPO, DDPO-x0, DDPP, DRAKES, Best-of-N, SVDD) on the
enumerable toy of test_finetune.py: exact expected rewards, reward-call accounting, error paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from support.toy import all_states, exact_sample_distribution, toy_model
from vidd.core import config as cfg
from vidd.core.alphabets import DNA
from vidd.diffusion.pretrain import ModelConfig
from vidd import FinetuneConfig, finetune
from vidd.training.context import Context
from vidd.training.objectives import DDPO, DRAKES, DDPOConfig, DRAKESConfig, Method
from vidd.guidance import SVDD, BestOfN, BestOfNConfig, SVDDConfig
from vidd.rewards.base import DifferentiableReward
from vidd.rewards.counted import CountedReward, RewardPolicy

G = DNA.letters.index("G")
QUIET = {"log": lambda *a: None}


class GCount(DifferentiableReward):
    """Number of G: a torch function of one-hot sequences, so DRAKES can use it. Records what it is sent."""

    name = "g-count"

    def __init__(self):
        super().__init__()
        self.sent: list[str] = []
        self.onehot_rows = 0

    def score(self, seqs):
        self.sent.extend(seqs)
        return [float(s.count("G")) for s in seqs]

    def score_onehot(self, onehot):
        self.onehot_rows += onehot.shape[0]
        return onehot[..., G].sum(-1)


def plain_g(seqs):
    return [float(s.count("G")) for s in seqs]


def expected_reward(model, steps=4) -> float:
    rewards = torch.tensor(plain_g(DNA.decode(all_states(model, False))), dtype=torch.float64)
    with torch.no_grad():
        return float(exact_sample_distribution(model, steps) @ rewards)


def config(method, **over):
    base = {"method": method, "iterations": 30, "steps": 4, "batch_size": 32, "accumulation": 1, "lr": 3e-3,
            "eval_every": 0, "eval_samples": 8, "final_samples": 8, "likelihood_samples": 2,
            "log_rollin_reward": False}
    return cfg.build(FinetuneConfig, cfg.merge(base, over))


@pytest.mark.parametrize("method,gain", [
    ("standard", 0.4), ("ddpo", 1.5), ("ddpo-x0", 1.5), ("ddpp", 0.4), ("drakes", 1.5),
])
def test_finetuning_baselines_raise_the_exact_expected_reward(method, gain):
    """30 iterations of 32 trajectories on length-4 DNA: E_p[#G] (exact, by dynamic programming over
    all 256 sequences) must rise. One-round methods anchored to the pretrained model (standard, DDPP)
    move towards p_pre exp(r); the on-policy reward maximisers (DDPO, DRAKES) go much further."""
    model = toy_model()
    before = expected_reward(model)
    result = finetune(model, GCount(), config(method), **QUIET)
    after = expected_reward(result.model)
    assert after > before + gain, (method, before, after)
    assert all(np.isfinite(r["loss"]) for r in result.metrics)


@pytest.mark.parametrize("method", ["vidd", "standard", "ddpo", "ddpo-x0", "ddpp", "drakes"])
@pytest.mark.parametrize("cache", [True, False])
def test_reward_accounting_is_exact(method, cache):
    """Every sequence the reward function receives (and every one-hot row DRAKES scores) is counted,
    with or without the cache; without it a budget of 60 calls stops training, never overshot."""
    reward = GCount()
    over = {"iterations": 6 if cache else 40, "batch_size": 8, "eval_every": 2, "log_rollin_reward": True,
            "reward": {"cache": cache, "budget": 0 if cache else 60}}
    name = {"name": "vidd", "timesteps": 2} if method == "vidd" else method
    result = finetune(toy_model(seed=3), reward, config(name, **over), **QUIET)
    monitor = result.metrics[-1]["monitor_reward_calls"]
    assert monitor > 0
    assert result.reward_calls + monitor == len(reward.sent) + reward.onehot_rows
    assert reward.onehot_rows == (result.reward_calls if method == "drakes" else 0)
    if not cache:
        assert result.reward_calls <= 60 and len(result.metrics) < 40


def test_derived_works_for_every_method():
    for name in Method.registry:
        rows = cfg.build(FinetuneConfig, {"method": name}).derived()
        assert rows["reward calls per iteration (at most, before caching)"] > 0


def test_drakes_refuses_a_plain_reward():
    with pytest.raises(cfg.ConfigError, match=r"drakes needs a differentiable reward.*plain_g"):
        finetune(toy_model(), plain_g, config("drakes", iterations=1), **QUIET)


@pytest.mark.parametrize("truncate_kl", [False, True])
def test_truncated_drakes_replays_the_collected_samples(truncate_kl):
    """collect's hard samples and example_loss's straight-through replay agree exactly; with truncation
    only the last steps carry reward gradients, and training still runs."""
    model = toy_model(seed=2)
    ctx = Context(model, model, model, CountedReward(GCount()), torch.Generator().manual_seed(0), 4)
    method = DRAKES(DRAKESConfig(truncate_steps=2, truncate_kl=truncate_kl))
    batch = method.collect(ctx, 6)
    x, kl = method.relaxed_sample(ctx, batch.examples)
    assert torch.equal(x.argmax(-1), batch.finals) and torch.equal(batch.examples["states"][:, -1], batch.finals)
    assert torch.allclose(x.detach(), F.one_hot(batch.finals, DNA.size + 1).float())
    assert torch.isfinite(kl).all() and (kl.abs() < 1e-5).all()  # student == pretrained
    method.example_loss(ctx, batch.examples).sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    result = finetune(toy_model(), GCount(), config({"name": "drakes", "truncate_steps": 1, "truncate_kl": truncate_kl},
                                                    iterations=3), **QUIET)
    assert len(result.metrics) == 3 and np.isfinite(result.metrics[-1]["loss"])


def test_ddpo_ratio_is_one_on_policy_and_the_clip_stops_gradients():
    model = toy_model(seed=4)
    ctx = Context(model, model, model, CountedReward(GCount()), torch.Generator().manual_seed(0), 4)
    method = DDPO(DDPOConfig(clip=0.2))
    ex = method.collect(ctx, 8).examples
    loss = method.example_loss(ctx, ex)
    assert torch.allclose(loss, -ex["advantage"], atol=1e-5)  # rho = 1: old is the pre-update snapshot
    pushed = dict(ex, old_log_prob=ex["old_log_prob"] - 1.0)  # rho = e > 1 + eps
    pos = pushed["advantage"] > 0
    method.example_loss(ctx, {k: v[pos] for k, v in pushed.items()}).sum().backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in model.parameters())


@pytest.mark.parametrize("kind", ["cnn", "transformer"])
def test_soft_input_matches_token_input(kind):
    model = ModelConfig(backbone=kind, hidden=16, layers=1, heads=2, stacks=1, dilations=[1]).build(DNA, 5)
    x = torch.tensor([[4, 0, 4, 2, 1], [4, 4, 4, 4, 4]])
    t = torch.tensor([0.5, 1.0])
    with torch.no_grad():
        hard, soft = model.denoise(x, t), model.denoise_soft(F.one_hot(x, DNA.size + 1).float(), t)
    assert torch.allclose(hard, soft, atol=1e-6)


def test_best_of_n_and_svdd_raise_the_sample_reward_and_count_calls():
    model, n = toy_model(seed=5), 24
    plain = np.mean(plain_g(DNA.decode(model.sample(n, 4, torch.Generator().manual_seed(0)))))
    for method in (BestOfN(BestOfNConfig(n_candidates=8)), SVDD(SVDDConfig(n_candidates=6))):
        reward = GCount()
        counted = CountedReward(reward, RewardPolicy(cache=False))
        out = method.generate(model, counted, n, 4, torch.Generator().manual_seed(1))
        assert out.shape == (n, 4) and (out < DNA.size).all()
        guided = np.mean(plain_g(DNA.decode(out)))
        assert guided > plain + 0.5, (method.name, plain, guided)
        assert counted.calls == len(reward.sent)
        if isinstance(method, BestOfN):
            assert counted.calls == n * 8
        else:
            assert counted.calls <= n * 6 * 4
    cached = CountedReward(GCount())
    SVDD(SVDDConfig(n_candidates=6)).generate(model, cached, n, 4, torch.Generator().manual_seed(1))
    assert cached.calls == len(cached.reward.sent) == len(set(cached.reward.sent))
