"""DDPP, DRAKES and the shared method helpers (importance weights, effective sample size, training-state
selection) against hand computations on position-wise table denoisers (`toy.table_model`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from support.toy import fill_argmax, make_context, model_log_probs, table_model
from vidd.core.alphabets import DNA
from vidd.training.objectives import DDPP, DRAKES, DDPPConfig, DRAKESConfig
from vidd.training.objectives.base import (
    effective_sample_size, importance_weights, masked_states, select_timesteps,
)
from vidd.training.rollin import RollInConfig
from vidd.rewards.base import DifferentiableReward

LENGTH, STEPS, ALPHA = 4, 4, 0.5
MASK = DNA.mask_index
G = DNA.letters.index("G")


def hand_reward(seqs):
    return [float(2 * s.count("G") - s.count("T") + ("AC" in s)) for s in seqs]


def masked_sum(model, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> np.ndarray:
    """sum over positions masked in x_t of log p_model(x_0^l | x_t) at each row's time, per row."""
    return np.array([sum(float(lp[l, a[l]]) for l in range(len(m)) if m[l] == MASK)
                     for m, a, lp in zip(x_t.tolist(), x0.tolist(), (model_log_probs(model, float(ti)) for ti in t))])


# ------------------------------------------------------------------------------------------------ DDPP
@pytest.mark.parametrize("length_normalize", [True, False])
def test_ddpp_regresses_onto_the_reward_tilted_pretrained_log_likelihood(length_normalize):
    """anchor = lp_pre(x_0 | x_t) + (r(x_0) - v_pre(x_t)) / alpha with lp the sum over positions masked in x_t
    (divided by L with length_normalize) and v_pre = r(pretrained argmax completion);
    loss = (lp_student(x_0 | x_t) - anchor)^2.

    Kills: alpha dropped, v_pre from another model or with the wrong sign, the 1 / L on one side only,
    the square (or its sign) of the residual, times paired wrongly with states (time-conditioned models)."""
    student, rollout, pretrained = (table_model(LENGTH, seed=s, time_conditioned=True) for s in (1, 2, 3))
    ctx = make_context(student, rollout, pretrained, reward=hand_reward, steps=STEPS)
    method = DDPP(DDPPConfig(alpha=ALPHA, length_normalize=length_normalize, timesteps=2,
                             value_batch_size=3))
    batch = method.collect(ctx, 8)
    ex = batch.examples
    x_t, x0 = ex["x_t"], ex["x0"]
    assert ((x0 == x_t) | (x_t == MASK)).all() and (x_t == MASK).any(-1).all()
    scale = LENGTH if length_normalize else 1
    lp_pre = masked_sum(pretrained, x_t, x0, ex["t"]) / scale
    v_pre = np.array(hand_reward(DNA.decode(fill_argmax(pretrained, x_t, ex["t"]))))
    target = (np.array(hand_reward(DNA.decode(x0))) - v_pre) / ALPHA
    np.testing.assert_allclose(ex["anchor"].numpy(), lp_pre + target, rtol=1e-5, atol=1e-5)
    assert batch.stats["target_mean"] == pytest.approx(target.mean(), rel=1e-5)
    lp_student = masked_sum(student, x_t, x0, ex["t"]) / scale
    loss = method.example_loss(ctx, ex)
    np.testing.assert_allclose(loss.detach().numpy(), (lp_student - lp_pre - target) ** 2, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------- DRAKES
class GCount(DifferentiableReward):
    """2 * number of G + number of T, as a torch function of (relaxed) one-hot rows over the letters only."""

    name = "g-count"

    def score(self, seqs):
        return [2.0 * s.count("G") + s.count("T") for s in seqs]

    def score_onehot(self, onehot):
        assert onehot.shape[-1] == DNA.size, "the mask column must be dropped"
        return 2.0 * onehot[..., G].sum(-1) + onehot[..., DNA.letters.index("T")].sum(-1)


def kl_by_hand(student, pretrained, x: torch.Tensor, m_t: float, m_s: float) -> np.ndarray:
    """(m_t - m_s) / m_t * sum over masked positions of KL(p_student(. | x) || p_pre(. | x)), per row."""
    ls, lq = model_log_probs(student), model_log_probs(pretrained)
    per_position = (ls.exp() * (ls - lq)).sum(-1)  # (L,)
    return np.array([(m_t - m_s) / m_t * sum(float(per_position[l]) for l in range(len(row)) if row[l] == MASK)
                     for row in x.tolist()])


def test_drakes_step_kl_by_hand():
    """KL of one reverse transition: only masked positions count, scaled by the reveal probability."""
    student, pretrained = table_model(LENGTH, seed=1), table_model(LENGTH, seed=2)
    x = torch.tensor([[MASK, MASK, MASK, MASK], [0, MASK, 2, MASK], [1, 2, 3, 0]])
    t = torch.tensor(0.5)
    kl = DRAKES.step_kl(student.denoise(x, t), pretrained.denoise(x, t), x, MASK, 0.8, 0.3)
    np.testing.assert_allclose(kl.detach().numpy(), kl_by_hand(student, pretrained, x, 0.8, 0.3), rtol=1e-5)
    assert kl[2] == 0 and kl[0] > kl[1] > 0


@pytest.mark.parametrize("k,expected", [(0, 0), (1, 9), (3, 7), (9, 1), (10, 0), (12, 0)])
def test_drakes_window_start(k, expected):
    assert DRAKES(DRAKESConfig(truncate_steps=k)).window_start(10) == expected


@pytest.mark.parametrize("time_conditioned", [False, True])
def test_drakes_soft_step_reveals_with_the_chain_probabilities(time_conditioned):
    """One straight-through step from the fully masked state (6000 sequences x 4 positions): a position stays
    masked with probability m_s / m_t, else takes letter v with probability p(v | t); forward values are hard
    one-hots, and an already revealed position is carried over.

    Kills: the stay / reveal log-probabilities swapped or mis-scaled, the Gumbel noise subtracted, a scalar
    time not broadcast over the batch (`denoise_soft`)."""
    model = table_model(LENGTH, seed=3, scale=1.0, time_conditioned=time_conditioned)
    method = DRAKES(DRAKESConfig())
    n, m_t, m_s = 6000, 0.8, 0.3
    width = DNA.size + 1
    noise = method.gumbel_noise(torch.arange(n), 1, LENGTH, width)[:, 0]
    x = torch.nn.functional.one_hot(torch.full((n, LENGTH), MASK), width).float()
    x[:10, 0] = torch.nn.functional.one_hot(torch.tensor(2), width).float()  # revealed: carried over
    nxt, _ = method.soft_step(model, x, 0.5, m_t, m_s, noise)
    assert torch.allclose(nxt, torch.nn.functional.one_hot(nxt.argmax(-1), width).float(), atol=1e-6)
    assert (nxt[:10, 0].argmax(-1) == 2).all()
    hard = nxt.argmax(-1)[10:]
    p = model_log_probs(model, 0.5).exp().numpy()
    expected = np.concatenate([(1 - m_s / m_t) * p, np.full((LENGTH, 1), m_s / m_t)], axis=1)  # (L, V + 1)
    observed = np.stack([np.bincount(hard[:, l].numpy(), minlength=width) for l in range(LENGTH)]) / len(hard)
    se = np.sqrt(expected * (1 - expected) / len(hard))
    assert (np.abs(observed - expected) < 5 * se + 1e-9).all(), (observed, expected)


def test_drakes_gumbel_noise_is_a_function_of_the_seed():
    a = DRAKES.gumbel_noise(torch.tensor([3, 4]), 2, 3, 5)
    b = DRAKES.gumbel_noise(torch.tensor([3, 5]), 2, 3, 5)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])
    # Gumbel(0, 1): mean Euler's gamma, variance pi^2 / 6
    big = DRAKES.gumbel_noise(torch.tensor([11]), 100, 20, 5)
    assert abs(float(big.mean()) - 0.5772) < 0.03 and abs(float(big.var()) - math.pi ** 2 / 6) < 0.1


@pytest.mark.parametrize("truncate_kl", [False, True])
def test_drakes_loss_is_minus_reward_plus_weighted_chain_kl(truncate_kl):
    """loss = -r(x_0) + kl_weight * sum_k KL_k at the collected states: over all T steps, or over the last
    truncate_steps only with truncate_kl; one counted reward call per sample.

    Kills: the reward's sign, kl_weight dropped or dividing, the KL summed over the wrong steps."""
    student, pretrained = table_model(LENGTH, seed=1), table_model(LENGTH, seed=2)
    ctx = make_context(student, student, pretrained, reward=GCount(), steps=STEPS)
    method = DRAKES(DRAKESConfig(kl_weight=0.5, truncate_steps=2, truncate_kl=truncate_kl))
    batch = method.collect(ctx, 6)
    states = batch.examples["states"]  # (n, T + 1, L)
    assert torch.equal(states[:, -1], batch.finals) and (states[:, 0] == MASK).all()
    _, mask_probs = student.grid(STEPS)
    kl = np.zeros(6)
    for k in range(2 if truncate_kl else 0, STEPS):
        kl += kl_by_hand(student, pretrained, states[:, k], float(mask_probs[k]), float(mask_probs[k + 1]))
    calls = ctx.reward.calls
    loss = method.example_loss(ctx, batch.examples)
    seqs = DNA.decode(batch.finals)
    r = np.array(GCount().score(seqs))
    np.testing.assert_allclose(loss.detach().numpy(), -r + 0.5 * kl, rtol=1e-5, atol=1e-6)
    assert ctx.reward.calls == calls + 6
    assert all(ctx.reward.cache[q] == v for q, v in zip(seqs, r))  # the scored samples, recorded with their values


def test_drakes_collect_checks_the_reward_and_draws_distinct_seeds():
    """collect() refuses a plain reward before sampling anything, and gives every sample its own noise seed
    (64 samples, 64 distinct seeds from a range far larger than the batch)."""
    from vidd.core.config import ConfigError

    model = table_model(LENGTH, seed=1)
    with pytest.raises(ConfigError, match="differentiable"):
        DRAKES(DRAKESConfig()).collect(make_context(model, reward=hand_reward, steps=STEPS), 2)
    seeds = DRAKES(DRAKESConfig()).collect(make_context(model, reward=GCount(), steps=STEPS), 64).examples["seed"]
    assert len(set(seeds.tolist())) == 64 and int(seeds.max()) > 2 ** 40


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_drakes_straight_through_gradient_is_the_tempered_softmax(temperature):
    """The backward pass of a straight-through step is that of softmax((logits + g) / temperature) over the
    V + 1 outcomes, logits = (log p(v) + log((m_t - m_s) / m_t), log(m_s / m_t)): the gradient of a random
    linear function of the step's output matches the one computed from that formula written out here.

    Kills: the temperature multiplying instead of dividing (invisible at the default 1.0), the softmax over
    the wrong axis, the relaxation's sign."""
    model = table_model(LENGTH, seed=3, scale=1.0)
    method = DRAKES(DRAKESConfig(temperature=temperature))
    n, m_t, m_s, width = 5, 0.8, 0.3, DNA.size + 1
    noise = method.gumbel_noise(torch.arange(n), 1, LENGTH, width)[:, 0]
    x = torch.nn.functional.one_hot(torch.full((n, LENGTH), MASK), width).float()
    c = torch.randn(n, LENGTH, width, generator=torch.Generator().manual_seed(0))
    nxt, _ = method.soft_step(model, x, 0.5, m_t, m_s, noise)
    (nxt * c).sum().backward()
    table = model.backbone.table.detach().clone().requires_grad_(True)
    logits = torch.cat([torch.log_softmax(table, -1) + math.log((m_t - m_s) / m_t),
                        torch.full((LENGTH, 1), math.log(m_s / m_t))], -1)
    (torch.softmax((logits + noise) / temperature, -1) * c).sum().backward()
    torch.testing.assert_close(model.backbone.table.grad, table.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("truncate", [1, 0])
def test_drakes_reward_gradient_flows_through_the_window_only(truncate):
    """With truncate_steps = 1 and no KL the reward gradient reaches the student only through the last step:
    table rows of positions already revealed before it (in every sample) get no gradient, rows of positions
    still masked there do. Without truncation every row does. The replay reproduces the collected samples.

    Kills: the window starting elsewhere, the straight-through replay not starting from the collected state."""
    student = table_model(LENGTH, seed=1)
    ctx = make_context(student, student, table_model(LENGTH, seed=2), reward=GCount(), steps=STEPS, seed=4)
    method = DRAKES(DRAKESConfig(kl_weight=0.0, truncate_steps=truncate))
    batch = method.collect(ctx, 3)
    x, kl = method.relaxed_sample(ctx, batch.examples)
    assert torch.equal(x.argmax(-1), batch.finals) and (kl == 0).all()
    method.example_loss(ctx, batch.examples).sum().backward()
    has_grad = (student.backbone.table.grad.abs().sum(-1) > 0).tolist()
    if truncate:
        masked_at_start = (batch.examples["states"][:, STEPS - 1] == MASK).any(0).tolist()
        assert has_grad == masked_at_start and any(masked_at_start) and not all(masked_at_start)
    else:
        assert all(has_grad)


# ------------------------------------------------------------------------------------ shared helpers
def test_importance_weights_by_hand():
    log_w = np.array([-1.0, 0.0, 2.0, 5.0])
    np.testing.assert_allclose(importance_weights(log_w, False, None), np.exp(log_w))
    np.testing.assert_allclose(importance_weights(log_w, False, 1.5), np.exp([-1.0, 0.0, 1.5, 1.5]))
    w = np.exp([-1.0, 0.0, 1.5, 1.5])
    np.testing.assert_allclose(importance_weights(log_w, True, 1.5), 4 * w / w.sum())
    np.testing.assert_allclose(importance_weights(log_w, True, None), 4 * np.exp(log_w) / np.exp(log_w).sum())
    np.testing.assert_allclose(importance_weights(np.array([-800.0, -801.0]), True, None),
                               2 * np.array([1, np.exp(-1)]) / (1 + np.exp(-1)))


def test_effective_sample_size_by_hand():
    assert effective_sample_size(np.array([1.0, 2.0, 3.0])) == pytest.approx(36 / (3 * 14))
    assert effective_sample_size(np.array([2.0, -2.0])) == pytest.approx(1.0)  # magnitudes, for baselines
    assert effective_sample_size(np.zeros(3)) == 0.0
    assert effective_sample_size(np.array([0.1, 0.1])) == pytest.approx(1.0)  # small weights: no floor at 1


def test_select_timesteps_all_or_a_random_subset_per_trajectory():
    ctx = make_context(table_model(LENGTH, seed=1))
    b, k = select_timesteps(ctx, 3, 4, 0)
    assert b.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and k.tolist() == [0, 1, 2, 3] * 3
    assert select_timesteps(ctx, 2, 4, 4)[1].tolist() == [0, 1, 2, 3] * 2  # as many as there are: all
    b, k = select_timesteps(ctx, 40, 6, 1)  # one random step per trajectory
    assert b.tolist() == list(range(40)) and len(set(k.tolist())) > 3
    b, k = select_timesteps(ctx, 50, 6, 2)
    assert b.tolist() == [i for i in range(50) for _ in range(2)]
    pairs = k.reshape(50, 2)
    assert (pairs[:, 0] != pairs[:, 1]).all() and k.min() == 0 and k.max() == 5  # distinct, cover the range


def test_masked_states_keep_only_states_with_a_mask():
    """Training states: every (trajectory, step) pair whose state still has a masked position, with the
    grid time of that step; the clean last states are dropped."""
    model = table_model(LENGTH, seed=1)
    ctx = make_context(model, steps=STEPS)
    traj = model.sample(5, STEPS, torch.Generator().manual_seed(0), record=True)
    b, k, x_t, t = masked_states(ctx, traj, 0)
    expected = [(i, j) for i in range(5) for j in range(STEPS) if (traj.states[j, i] == MASK).any()]
    assert list(zip(b.tolist(), k.tolist())) == expected
    assert torch.equal(x_t, traj.states[k, b]) and torch.equal(t, traj.times[k].float())


def test_states_and_endpoints_pair_each_state_with_its_own_final_sample():
    """RollInMethod.states_and_endpoints: x_t, its time, its trajectory's clean final sample and reward."""
    model = table_model(LENGTH, seed=1)
    ctx = make_context(model, reward=hand_reward, steps=STEPS, seed=3)
    method = DDPP(DDPPConfig(timesteps=0, rollin=RollInConfig(beta=1.0, source="student")))
    x_t, t, x0, r0, _, traj = method.states_and_endpoints(ctx, 6, 0, method.value)
    b, k, expected_x, expected_t = masked_states(ctx, traj, 0)
    assert torch.equal(x_t, expected_x) and torch.equal(t, expected_t)
    assert torch.equal(x0, traj.final[b])
    np.testing.assert_allclose(r0, hand_reward(DNA.decode(traj.final[b])))
