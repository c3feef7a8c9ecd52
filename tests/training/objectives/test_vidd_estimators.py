"""VIDD's reward-efficient estimator options, each checked against a hand computation on a toy: the shared
roll-out (`rollout: rollin`), forward reuse, several optimiser steps per batch (`inner_steps`), the learned
value, and the weights actually used."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from support.toy import toy_model
from vidd import FinetuneConfig, finetune
from vidd.core import config as cfg
from vidd.core.alphabets import DNA
from vidd.rewards.counted import CountedReward
from vidd.training.context import Context
from vidd.training.objectives import VIDD, VIDDConfig
from vidd.training.objectives.base import effective_sample_size
from vidd.training.rollin import RollIn
from vidd.training.trainer import Trainer
from vidd.training.value import LearnedValue, LearnedValueConfig, ValueEstimator

QUIET = {"log": lambda *a: None}


def g_reward(seqs):
    return [float(s.count("G")) + 1.5 * ("CG" in s) for s in seqs]


class Forwards:
    """Rows through a model's backbone without gradients."""

    def __init__(self, model):
        self.rows = 0
        model.backbone.register_forward_hook(self.hook)

    def hook(self, module, args, output):
        if not torch.is_grad_enabled():
            self.rows += args[0].shape[0]


def three_models(length=8, seed=0):
    """Student, roll-out and pretrained as three objects (as in the trainer), the roll-out a little apart."""
    pretrained = toy_model(length=length, seed=seed)
    student, rollout = copy.deepcopy(pretrained), copy.deepcopy(pretrained)
    with torch.no_grad():
        for p in rollout.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(7)))
    return student, rollout, pretrained


def context(models, seed=0, steps=6, reward=g_reward):
    return Context(*models, CountedReward(reward), torch.Generator().manual_seed(seed), steps)


def vidd_config(**over) -> VIDDConfig:
    return cfg.build(VIDDConfig, cfg.merge({"value": {"denoiser": "rollout"}}, over))


def completion_value(model, x, t):
    """r(argmax completion) of one state by hand: the SUBS denoiser carries clean positions over."""
    with torch.no_grad():
        filled = model.denoise(x[None], torch.tensor([t])).argmax(-1)[0]
    return g_reward(DNA.decode(filled[None]))[0]


def test_shared_rollout_trains_on_consecutive_rollin_states_with_hand_computed_weights():
    """rollout: rollin. Every example is (x_t, x_s) = (state k, state k + 1) of a roll-in chain, its weight is
    exp((v(x_s) - v(x_t)) / alpha) with v = r(argmax completion by the roll-out model) computed by hand, the
    final state's value is r(x_0), and the batch costs at most 1.05 distinct reward calls per example."""
    models, n, alpha = three_models(), 48, 0.7
    config = vidd_config(rollout="rollin", alpha=alpha)
    ctx = context(models)
    batch = VIDD(config).collect(ctx, n)
    traj, _ = RollIn(config.rollin).sample(context(models), n)  # the same roll-ins (same generator draws)
    rollout = models[1]
    expected_pairs, expected_w = [], []
    for b in range(n):
        first = 0
        for k in range(traj.steps):
            x_t, x_s = traj.states[k, b], traj.states[k + 1, b]
            if (x_s != x_t).any():
                v_t = completion_value(rollout, x_t, float(traj.times[first]))
                v_s = completion_value(rollout, x_s, float(traj.times[k + 1]))
                if k + 1 == traj.steps:
                    assert v_s == g_reward(DNA.decode(x_s[None]))[0]  # the decoded state's value is r(x_0)
                expected_pairs.append(torch.stack([x_t, x_s]))
                expected_w.append(np.exp((v_s - v_t) / alpha))
                first = k + 1
    ex = batch.examples
    assert torch.equal(torch.stack([ex["x_t"], ex["x_s"]], 1), torch.stack(expected_pairs))
    np.testing.assert_allclose(ex["weight"].numpy(), np.array(expected_w, dtype=np.float32), rtol=1e-6)
    assert batch.stats["shared_rollout"] == 1.0
    assert ctx.reward.calls / batch.size <= 1.05, (ctx.reward.calls, batch.size)


def test_shared_rollout_needs_no_forward_beyond_the_rollin():
    """With the roll-out model rolling in and valuing states, the only denoiser forwards of a batch are the
    roll-in's: at most 1.5 per training example (7 with the fresh roll-out at 8 of 32 states and student values)."""
    models, n = three_models(), 32
    counters = [Forwards(m) for m in models]
    ctx = context(models)
    batch = VIDD(vidd_config(rollout="rollin")).collect(ctx, n)
    student, rollout, pretrained = (c.rows for c in counters)
    assert student == pretrained == 0 and rollout == n * ctx.steps
    assert rollout / batch.size <= 1.5


def test_pretrained_rollins_still_get_a_fresh_rollout():
    """beta < 1: trajectories of the pretrained model do not share their next state (it is not a draw from the
    roll-out model); theirs is a fresh one-step sample, valued on its own."""
    models = three_models()
    config = vidd_config(rollout="rollin", rollin={"beta": 0.5})
    batch = VIDD(config).collect(context(models, seed=3), 40)
    traj, drawn_by = RollIn(config.rollin).sample(context(models, seed=3), 40)
    assert 0 < batch.stats["shared_rollout"] < 1
    assert any(m is models[2] for m in drawn_by) and any(m is models[1] for m in drawn_by)
    chains = {True: {}, False: {}}  # drawn by the roll-out model? -> x_k -> the chains' next states
    for b in range(40):
        for k in range(traj.steps):
            nxt = chains[drawn_by[b] is models[1]].setdefault(tuple(traj.states[k, b].tolist()), set())
            nxt.add(tuple(traj.states[k + 1, b].tolist()))
    own_next = {True: [], False: []}
    for x_t, x_s in zip(batch.examples["x_t"].tolist(), batch.examples["x_s"].tolist()):
        for drawn_by_rollout in (True, False):
            if tuple(x_t) in chains[drawn_by_rollout] and tuple(x_t) not in chains[not drawn_by_rollout]:
                own_next[drawn_by_rollout].append(tuple(x_s) in chains[drawn_by_rollout][tuple(x_t)])
    assert own_next[True] and all(own_next[True])  # the roll-out model's chains: their own next state
    assert own_next[False] and not all(own_next[False])  # the pretrained chains: fresh draws


def test_reusing_forwards_changes_no_number(monkeypatch):
    """fresh roll-out, value.denoiser: rollout: v(x_t) takes the roll-in's (or roll-out's) own completion of
    x_t instead of a second forward; the batch is identical to one that makes the forward, with fewer forwards."""
    def collect(reuse: bool):
        models = three_models()
        counter = Forwards(models[1])
        if not reuse:
            monkeypatch.setattr(ValueEstimator, "reuses", lambda self, ctx, model: False)
        batch = VIDD(vidd_config(timesteps=3)).collect(context(models, seed=5), 24)
        monkeypatch.undo()
        return batch, counter.rows

    (reused, fewer), (again, more) = collect(True), collect(False)
    for key in reused.examples:
        assert torch.equal(reused.examples[key], again.examples[key]), key
    assert fewer < more


def test_inner_steps_take_n_optimiser_steps_per_batch_and_log_the_students_movement():
    config = cfg.build(FinetuneConfig, {
        "iterations": 3, "steps": 4, "batch_size": 8, "accumulation": 2, "lr": 3e-3, "eval_every": 0,
        "eval_samples": 4, "final_samples": 4, "likelihood_samples": 2, "log_rollin_reward": False,
        "method": {"name": "vidd", "inner_steps": 3, "update_interval": 2, "value": {"denoiser": "rollout"}}})
    trainer = Trainer(config, toy_model(), g_reward, log=lambda *a: None)
    steps, collects, starts = [0], [0], []
    step, collect = trainer.optimizer.step, trainer.method.collect

    def counted_step(*a, **k):
        steps[0] += 1
        return step(*a, **k)

    def counted_collect(ctx, n):
        if ctx.chunk == 0:
            starts.append([p.detach().clone() for p in trainer.ctx.student.parameters()])
        collects[0] += 1
        return collect(ctx, n)

    trainer.optimizer.step, trainer.method.collect = counted_step, counted_collect
    result = trainer.run()
    assert collects[0] == 3 * 2 and steps[0] == 3 * 3
    assert [r["updates"] for r in result.metrics] == [3, 6, 9]
    ends = starts[1:] + [list(result.model.parameters())]
    for row, before, after in zip(result.metrics, starts, ends):
        moved = sum(float((a.detach() - b).pow(2).sum()) for a, b in zip(after, before))
        assert row["student_shift"] == pytest.approx((moved / sum(float(b.pow(2).sum()) for b in before)) ** 0.5)
        assert row["loss_last_step"] != row["loss"]


@pytest.mark.parametrize("over,message", [
    ({"inner_steps": 2}, "does not depend on the student"),  # default values: the student's completions
    ({"inner_steps": 2, "value": {"denoiser": "rollout"}, "rollin": {"source": "student"}}, "rollin.source"),
    ({"rollout": "rollin", "rollin": {"source": "student"}}, "roll-ins by the roll-out model"),
])
def test_options_that_would_bias_the_estimator_are_refused(over, message):
    with pytest.raises(cfg.ConfigError, match=message):
        cfg.build(FinetuneConfig, {"method": {"name": "vidd", **over}})


def test_learned_value_regresses_to_a_known_function():
    """Regressing (x, t) -> f(x) = #G + 0.5 * #masked on random partly masked states: the network's held-out
    error is a small fraction of f's variance."""
    model = toy_model(length=8)
    ctx = Context(model, model, model, CountedReward(g_reward), torch.Generator().manual_seed(0), 4)
    gen = torch.Generator().manual_seed(1)

    def states(n):
        x = torch.randint(0, 4, (n, 8), generator=gen)
        masked = torch.rand(n, 8, generator=gen) < torch.rand(n, 1, generator=gen)
        masked[:, 0] = True
        x = torch.where(masked, DNA.mask_index, x)
        return x, masked.float().mean(-1), ((x == DNA.letters.index("G")).sum(-1) + 0.5 * masked.sum(-1)).float()

    value = LearnedValue(LearnedValueConfig(fit_steps=600, lr=3e-3, buffer=4096))
    value.commit({0: states(4096)})
    value.fit(ctx)
    x, t, f = states(512)
    error = np.mean((value(ctx, x, t) - f.numpy()) ** 2)
    assert value.ready and error < 0.05 * float(f.var()), (error, float(f.var()))


def test_learned_value_spends_calls_on_final_samples_only():
    """value.kind: learned with rollout: rollin. Each batch costs exactly its roll-ins' final samples; the first
    batch only feeds the value network (no update), later ones train."""
    config = cfg.build(FinetuneConfig, {
        "iterations": 4, "steps": 6, "batch_size": 12, "accumulation": 2, "lr": 3e-3, "eval_every": 0,
        "eval_samples": 4, "final_samples": 4, "likelihood_samples": 2, "reward": {"cache": False},
        "method": {"name": "vidd", "rollout": "rollin", "inner_steps": 2, "value": {"kind": "learned"}}})
    result = finetune(toy_model(length=8), g_reward, config, **QUIET)
    rows = result.metrics
    assert [r["reward_calls"] for r in rows] == [24, 48, 72, 96]  # 2 x 12 finals per iteration, nothing else
    assert rows[0]["examples"] == 0 and [r["updates"] for r in rows] == [0, 2, 4, 6]
    assert all(r["examples"] > 0 and np.isfinite(r["loss"]) for r in rows[1:])


def test_learned_value_resumes_exactly(tmp_path):
    config = cfg.build(FinetuneConfig, {
        "iterations": 4, "steps": 4, "batch_size": 6, "accumulation": 1, "lr": 3e-3, "eval_every": 0,
        "eval_samples": 4, "final_samples": 4, "likelihood_samples": 2, "checkpoint_every": 2,
        "method": {"name": "vidd", "rollout": "rollin", "value": {"kind": "learned"}}})
    full = finetune(toy_model(), g_reward, config, out=tmp_path / "full", **QUIET)
    finetune(toy_model(), g_reward, cfg.build(FinetuneConfig, cfg.to_dict(config), {"iterations": 2}),
             out=tmp_path / "cut", **QUIET)
    resumed = finetune(toy_model(), g_reward, config, out=tmp_path / "cut", resume=True, **QUIET)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("weights", [{"baseline": "mean"}, {"self_normalize": True}, {}])
def test_the_effective_sample_size_of_the_weights_used_is_logged(weights):
    """`ess` is that of exp(dv / alpha); `ess_used` that of the weights in the loss: after the mean baseline,
    (w - mean w); self-normalised weights have mean 1 and the same ESS (a rescaling)."""
    config = vidd_config(timesteps=3, **weights)
    batch = VIDD(config).collect(context(three_models(), seed=2), 32)
    used = batch.examples["weight"].double().numpy()
    assert batch.stats["ess_used"] == pytest.approx(effective_sample_size(used), rel=1e-5)
    if weights.get("baseline") == "mean":
        assert abs(used.mean()) < 1e-6 and batch.stats["ess_used"] != pytest.approx(batch.stats["ess"])
    else:
        assert batch.stats["ess_used"] == pytest.approx(batch.stats["ess"], rel=1e-5)
    if weights.get("self_normalize"):
        assert used.mean() == pytest.approx(1.0)
