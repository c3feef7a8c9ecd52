"""DDPO and DDPO-x0: the clipped surrogate on both sides of the clip (positive and negative advantages,
rho above 1 + eps and below 1 - eps), the collected examples against a hand reconstruction, and the PPO
setting update_interval > 1 in which the ratio really leaves the clip range.

Models are position-wise table denoisers (`toy.table_model`), so every log-probability is read off a table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.toy import make_context, model_log_probs, table_model, train

from vidd.core.alphabets import DNA
from vidd.training.objectives import DDPO, DDPOConfig, DDPOx0, DDPOx0Config
from vidd.training.rollin import RollInConfig

LENGTH, STEPS, EPS = 4, 4, 0.2
MASK = DNA.mask_index
RHOS = [0.5, 0.75, 0.85, 1.0, 1.15, 1.3, 1.7]


def hand_reward(seqs):
    return [float(s.count("G") + 0.5 * s.count("A") + ("TC" in s)) for s in seqs]


def hand_log_prob(model, x_t, target, x0_ratio: bool, t=None) -> torch.Tensor:
    """log p(target | x_t) up to the reveal constants (per-step ratio), or the x_0 version divided by L
    (with a time-conditioned model, at each row's time t)."""
    out = []
    for i, (x, y) in enumerate(zip(x_t.tolist(), target.tolist())):
        lp = model_log_probs(model, None if t is None else float(t[i]))
        out.append(sum(float(lp[l, y[l]]) for l in range(len(x)) if x[l] == MASK and y[l] != MASK))
    out = torch.tensor(out, dtype=torch.float64)
    return out / x_t.shape[1] if x0_ratio else out


def surrogate(rho, adv, eps=EPS):
    return np.maximum(-adv * rho, -adv * np.clip(rho, 1 - eps, 1 + eps))


def method_of(kind, rollin="student", **over):
    over["rollin"] = RollInConfig(source=rollin)
    return DDPO(DDPOConfig(clip=EPS, **over)) if kind == "ddpo" else DDPOx0(DDPOx0Config(clip=EPS, **over))


def grid_examples(method, ctx, kind):
    """A collected batch re-labelled with chosen ratios rho and advantages A (every pair of RHOS x {+1.3, -0.8}):
    old_log_prob = log p_student - log rho."""
    ex = method.collect(ctx, 16).examples
    n = len(RHOS) * 2
    assert len(ex["x_t"]) >= n
    ex = {k: v[:n] for k, v in ex.items()}
    rho = np.array(RHOS * 2)
    adv = np.repeat([1.3, -0.8], len(RHOS))
    current = hand_log_prob(ctx.student, ex["x_t"], ex["target"], kind == "ddpo-x0")
    ex["old_log_prob"] = (current - torch.tensor(np.log(rho))).float()
    ex["advantage"] = torch.tensor(adv, dtype=torch.float32)
    return ex, rho, adv


@pytest.mark.parametrize("kind", ["ddpo", "ddpo-x0"])
def test_surrogate_on_both_sides_of_the_clip(kind):
    """loss = max(-A rho, -A clip(rho, 1 - eps, 1 + eps)) for rho from 0.5 to 1.7 and A of both signs; the
    gradient vanishes exactly where the clipped branch is active (A > 0, rho > 1 + eps; A < 0, rho < 1 - eps).

    Kills: the lower clip bound dropped (`clamp(max=1 + eps)`), the upper one dropped, max <-> min, eps
    added on the wrong side, the advantage's sign."""
    student = table_model(LENGTH, seed=1)
    ctx = make_context(student, table_model(LENGTH, seed=2), table_model(LENGTH, seed=3), reward=hand_reward,
                       steps=STEPS)
    method = method_of(kind, timesteps=0)
    ex, rho, adv = grid_examples(method, ctx, kind)
    loss = method.example_loss(ctx, ex)
    np.testing.assert_allclose(loss.detach().numpy(), surrogate(rho, adv), rtol=1e-4)
    clipped = ((adv > 0) & (rho > 1 + EPS)) | ((adv < 0) & (rho < 1 - EPS))
    assert clipped.sum() == 4 and (~clipped).sum() == 10
    for i in range(len(rho)):
        student.zero_grad()
        method.example_loss(ctx, {k: v[i:i + 1] for k, v in ex.items()}).sum().backward()
        grad = float(student.backbone.table.grad.abs().sum())
        assert (grad == 0) == bool(clipped[i]), (i, rho[i], adv[i], grad)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("rollin", ["student", "rollout"])
@pytest.mark.parametrize("kind", ["ddpo", "ddpo-x0"])
def test_collected_examples_match_a_hand_reconstruction(kind, rollin, normalize):
    """Replaying the roll-in from the same seed, every example is: a state x_k of a trajectory of the
    configured roll-in model, its target (ddpo: x_{k+1}, kept if it reveals something; ddpo-x0: the final
    sample, kept if x_k has a mask), its time t_k, the trajectory's advantage (the batch-standardised final
    reward, or the raw reward) and old_log_prob from the roll-out model's table.

    Kills: the roll-in model swapped, the standardisation off or wrong (mean / std), the wrong target or
    usable-state filter, old_log_prob from the student, the wrong time (the models are time-conditioned)."""
    models = [table_model(LENGTH, seed=s, time_conditioned=True) for s in (1, 2, 3)]
    ctx = make_context(*models, reward=hand_reward, steps=STEPS, seed=5)
    method = method_of(kind, timesteps=0, rollin=rollin, normalize_advantage=normalize)
    batch = method.collect(ctx, 6)
    ex = batch.examples

    ctx.generator.manual_seed(5)
    traj = ctx.model(rollin).sample(6, STEPS, ctx.generator, record=True)
    assert torch.equal(batch.finals, traj.final)
    r = np.array(hand_reward(DNA.decode(traj.final)))
    adv = (r - r.mean()) / (r.std() + 1e-8) if normalize else r
    rows = []
    for b in range(6):
        for k in range(STEPS):
            x, nxt = traj.states[k, b], traj.states[k + 1, b]
            target = traj.final[b] if kind == "ddpo-x0" else nxt
            usable = (x == MASK).any() if kind == "ddpo-x0" else ((x == MASK) & (nxt != MASK)).any()
            if usable:
                rows.append((x, target, float(traj.times[k]), adv[b]))
    assert len(rows) == len(ex["x_t"]) and batch.stats["examples"] == len(rows)
    assert torch.equal(ex["x_t"], torch.stack([row[0] for row in rows]))
    assert torch.equal(ex["target"], torch.stack([row[1] for row in rows]))
    np.testing.assert_allclose(ex["t"].numpy(), [row[2] for row in rows], rtol=1e-6)
    np.testing.assert_allclose(ex["advantage"].numpy(), [row[3] for row in rows], rtol=1e-5, atol=1e-6)
    old = hand_log_prob(ctx.rollout, ex["x_t"], ex["target"], kind == "ddpo-x0", ex["t"])
    np.testing.assert_allclose(ex["old_log_prob"].numpy(), old.numpy(), rtol=1e-5, atol=1e-6)
    assert batch.stats["final_reward_mean"] == pytest.approx(r.mean())


def test_a_batch_without_usable_states_is_empty_and_consistent():
    """With one random step per trajectory of a long chain, no chosen step may reveal anything: the batch is
    then empty, every example tensor with 0 rows (the trainer takes no step on it)."""
    model = table_model(2, seed=1)
    ctx = make_context(model, reward=hand_reward, steps=64, seed=0)
    ex = method_of("ddpo", timesteps=1).collect(ctx, 2).examples
    assert {k: len(v) for k, v in ex.items()} == {k: 0 for k in ex}


def test_advantages_of_nearly_equal_rewards():
    """(r - mean) / (std + 1e-8) also when the rewards differ by about 1e-9: the guard keeps the advantages'
    signs (and, for equal rewards, makes them 0).

    Kills: the guard subtracted instead of added."""
    ctx = make_context(table_model(LENGTH, seed=1), reward=lambda seqs: [1e-9 * r for r in hand_reward(seqs)],
                       steps=STEPS)
    batch = method_of("ddpo-x0", timesteps=0).collect(ctx, 8)
    ex = batch.examples
    r = 1e-9 * np.array(hand_reward(DNA.decode(ex["target"])))
    all_r = 1e-9 * np.array(hand_reward(DNA.decode(batch.finals)))
    np.testing.assert_allclose(ex["advantage"].numpy(), (r - all_r.mean()) / (all_r.std() + 1e-8), rtol=1e-5)
    assert all_r.std() > 0 and (np.sign(ex["advantage"].numpy()) == np.sign(r - all_r.mean())).all()


@pytest.mark.parametrize("kind", ["ddpo", "ddpo-x0"])
def test_update_interval_three_ratio_leaves_the_clip_and_refreshes_at_k(kind):
    """PPO proper (update_interval K = 3, roll-in from `old`, a large step size): in iterations 2 and 3 the
    collected old_log_prob is the snapshot of iteration 1's start, so rho = p_student / p_old moves away from 1
    (beyond 1 +- eps for some examples, on both sides); the loss is the clipped surrogate of those ratios and
    clipped examples carry no gradient. After iteration K the roll-out model is the student again (rho = 1).

    Kills: `old` refreshed every iteration (rho = 1 always), the clip's bounds, the lazy update's timing."""
    student = table_model(LENGTH, seed=1)
    ctx = make_context(student, table_model(LENGTH, seed=1), table_model(LENGTH, seed=3), reward=hand_reward,
                       steps=STEPS)
    method = method_of(kind, timesteps=0, update_interval=3, rollin="rollout")
    lr = 0.3 if kind == "ddpo" else 3.0
    train(method, ctx, iterations=1, batch_size=16, lr=lr)  # iteration 0: student moves, old does not
    assert not torch.equal(ctx.rollout.backbone.table, student.backbone.table)
    ctx.iteration = 1
    ex = method.collect(ctx, 32).examples
    x0 = kind == "ddpo-x0"
    rho = torch.exp(hand_log_prob(student, ex["x_t"], ex["target"], x0) - ex["old_log_prob"].double()).numpy()
    assert (rho > 1 + EPS).any() and (rho < 1 - EPS).any(), rho
    adv = ex["advantage"].double().numpy()
    loss = method.example_loss(ctx, ex)
    np.testing.assert_allclose(loss.detach().numpy(), surrogate(rho, adv), rtol=1e-4, atol=1e-6)
    clipped = ((adv > 0) & (rho > 1 + EPS)) | ((adv < 0) & (rho < 1 - EPS))
    assert clipped.any() and (~clipped).any()
    student.zero_grad()
    method.example_loss(ctx, {k: v[torch.as_tensor(clipped)] for k, v in ex.items()}).sum().backward()
    assert student.backbone.table.grad.abs().max() == 0
    method.end_of_iteration(ctx)  # end of iteration 1 (the second): no refresh yet
    assert not torch.equal(ctx.rollout.backbone.table, student.backbone.table)
    ctx.iteration = 2
    method.end_of_iteration(ctx)  # end of iteration 2 (the third, K = 3): refresh
    assert torch.equal(ctx.rollout.backbone.table, student.backbone.table)
    ctx.iteration = 3
    ex = method.collect(ctx, 8).examples
    torch.testing.assert_close(method.example_loss(ctx, ex), -ex["advantage"], rtol=1e-5, atol=1e-5)
