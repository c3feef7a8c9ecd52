"""VIDD's importance weights, loss and soft values against hand computations.

The three models are position-wise table denoisers (`toy.table_model`): p(x_0^l | x_t) = softmax(table[l])
at masked positions whatever x_t is, so the value of a state, r(argmax completion), and every log-probability
are known without going through vidd's code. The reward is a hand-set table plus an interaction term."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from support.toy import fill_argmax, make_context, model_log_probs, table_model
from vidd.core.alphabets import DNA
from vidd.training.objectives import VIDD, VIDDConfig, VIDDx0, VIDDx0Config
from vidd.training.value import ValueConfig, ValueEstimator

LENGTH, STEPS, ALPHA = 4, 4, 0.5
W = np.random.default_rng(0).normal(size=(LENGTH, DNA.size))
MASK = DNA.mask_index


def hand_reward(seqs):
    """sum_l W[l, x_l] + 1 if the sequence contains GA: a reward with no structure vidd could exploit."""
    return [float(sum(W[l, "ACGT".index(c)] for l, c in enumerate(s)) + ("GA" in s)) for s in seqs]


def value_of(model, x: torch.Tensor, t: torch.Tensor | None = None) -> np.ndarray:
    """r(x0_hat(x)) with x0_hat the model's most likely letter at every masked position (at time t)."""
    return np.array(hand_reward(DNA.decode(fill_argmax(model, x, t))))


def three_models():
    return {"student": table_model(LENGTH, seed=1), "rollout": table_model(LENGTH, seed=2),
            "pretrained": table_model(LENGTH, seed=3)}


def context(models, seed=1, reward=hand_reward):
    return make_context(models["student"], models["rollout"], models["pretrained"], reward=reward, steps=STEPS,
                        seed=seed)


def check_one_step(x_t, x_s):
    """x_s is one reverse step from x_t that reveals at least one position and changes nothing else."""
    masked = x_t == MASK
    assert ((x_s == x_t) | masked).all()
    assert ((x_s != x_t) & masked).any(-1).all()


# (self_normalize, baseline, max_log_weight)
WEIGHTINGS = [(False, "none", None), (False, "none", 0.5), (True, "none", None), (True, "none", 0.5),
              (False, "mean", 0.5), (True, "mean", None)]


@pytest.mark.parametrize("self_normalize,baseline,max_log_weight", WEIGHTINGS)
@pytest.mark.parametrize("use_value_xt", [True, False])
@pytest.mark.parametrize("denoiser", ["rollout", "student", "pretrained"])
def test_vidd_weights_match_hand_computation(denoiser, use_value_xt, self_normalize, baseline, max_log_weight):
    """w = exp((v(x_s) - v(x_t)) / alpha) (no v(x_t) without use_value_xt), log-clipped at max_log_weight,
    optionally self-normalised to mean 1, minus the batch mean with baseline=mean; v = r(argmax completion)
    by the configured denoiser (the three models differ, so the wrong one gives other values).

    Kills: the division by alpha dropped, v(x_t) ignored or added, the wrong value denoiser, the clip on the
    wrong side (max <-> min), self-normalisation / baseline off or inverted, and the logged statistics."""
    models = three_models()
    ctx = context(models)
    cfg = VIDDConfig(alpha=ALPHA, use_value_xt=use_value_xt, self_normalize=self_normalize, baseline=baseline,
                     max_log_weight=max_log_weight, timesteps=0, value=ValueConfig(denoiser=denoiser))
    batch = VIDD(cfg).collect(ctx, 16)
    ex = batch.examples
    x_t, x_s = ex["x_t"], ex["x_s"]
    n = len(x_t)
    assert n >= 16 and batch.stats["examples"] == n
    check_one_step(x_t, x_s)

    v_s = value_of(models[denoiser], x_s)
    v_t = value_of(models[denoiser], x_t) if use_value_xt else 0.0
    log_w = (v_s - v_t) / ALPHA
    clipped = log_w if max_log_weight is None else np.minimum(log_w, max_log_weight)
    if max_log_weight is not None:
        assert (log_w > max_log_weight).any() and (log_w < max_log_weight).any()  # the clip binds, not everywhere
    w = np.exp(clipped - clipped.max()) * n / np.exp(clipped - clipped.max()).sum() if self_normalize \
        else np.exp(clipped)
    ess = w.sum() ** 2 / (n * (w ** 2).sum())
    if baseline == "mean":
        w = w - w.mean()
    np.testing.assert_allclose(ex["weight"].numpy(), w, rtol=1e-5, atol=1e-6)
    assert batch.stats["ess"] == pytest.approx(ess)
    assert batch.stats["log_weight_mean"] == pytest.approx(log_w.mean())
    assert batch.stats["log_weight_max"] == pytest.approx(log_w.max())
    assert torch.equal(batch.finals, batch.finals.clamp(max=DNA.size - 1))  # clean roll-in samples


def test_vidd_loss_is_minus_weight_times_revealed_log_likelihood():
    """loss_i = -w_i * sum over positions masked in x_t and revealed in x_s of log p_student(x_s^l | x_t),
    with the student's log-probabilities read from its table; its gradient flows into the student only.

    Kills: a wrong sign, log-probabilities of the wrong model or of the wrong positions."""
    models = three_models()
    ctx = context(models)
    method = VIDD(VIDDConfig(alpha=ALPHA, timesteps=0))
    ex = method.collect(ctx, 8).examples
    loss = method.example_loss(ctx, ex)
    lp = model_log_probs(models["student"])
    revealed = (ex["x_t"] == MASK) & (ex["x_s"] != MASK)
    by_hand = [-float(w) * sum(float(lp[l, x[l]]) for l in range(LENGTH) if r[l])
               for w, x, r in zip(ex["weight"], ex["x_s"], revealed)]
    np.testing.assert_allclose(loss.detach().numpy(), by_hand, rtol=1e-5)
    loss.sum().backward()
    assert models["student"].backbone.table.grad.abs().sum() > 0
    assert models["rollout"].backbone.table.grad is None and models["pretrained"].backbone.table.grad is None


@pytest.mark.parametrize("method_name", ["vidd", "standard"])
def test_one_step_samples_come_from_the_teacher(method_name):
    """VIDD's x_t and x_s come from the roll-out model, standard fine-tuning's from the pretrained model: with
    near-deterministic tables (each model always reveals its own letter) the revealed letters tell which.

    Kills: the teacher or the roll-in model swapped (VIDD reading the student or the pretrained model,
    standard the roll-out model)."""
    from vidd.training.objectives import StandardConfig, StandardFinetune

    models = {name: table_model(LENGTH, seed=s, scale=40.0) for name, s in
              (("student", 1), ("rollout", 2), ("pretrained", 3))}
    letters = {name: m.backbone.table.argmax(-1) for name, m in models.items()}
    assert len({tuple(v.tolist()) for v in letters.values()}) == 3
    method = VIDD(VIDDConfig(timesteps=0)) if method_name == "vidd" else StandardFinetune(StandardConfig())
    ex = method.collect(context(models), 8).examples
    revealed = (ex["x_t"] == MASK) & (ex["x_s"] != MASK)
    teacher = "rollout" if method_name == "vidd" else "pretrained"
    expected = letters[teacher].expand_as(ex["x_s"])
    assert torch.equal(ex["x_s"][revealed], expected[revealed])
    # the roll-in too: VIDD from the roll-out model (beta 1), standard from the pretrained model (beta 0)
    known = ex["x_t"] != MASK
    assert known.any() and torch.equal(ex["x_t"][known], expected[known])


def test_standard_weights_use_pretrained_values_without_the_xt_term():
    """Standard fine-tuning: w = exp(v_pre(x_s) / alpha), the pretrained model's argmax completion."""
    from vidd.training.objectives import StandardConfig, StandardFinetune

    models = three_models()
    method = StandardFinetune(StandardConfig(alpha=ALPHA, max_log_weight=None))
    ex = method.collect(context(models), 8).examples
    np.testing.assert_allclose(ex["weight"].numpy(), np.exp(value_of(models["pretrained"], ex["x_s"]) / ALPHA),
                               rtol=1e-5)


@pytest.mark.parametrize("normalize,clamp,scale", [("zscore", 1e6, 1.0), ("zscore", 1.5, 1.0), ("none", 1e6, 1.0),
                                                   ("none", 1.5, 1.0), ("zscore", 1e6, 1e-9)])
def test_vidd_x0_weights_and_loss(normalize, clamp, scale):
    """vidd-x0: ratio = clip(exp((r(x_0) - v(x_t)) / alpha), 1 / clamp, clamp) with x_0 the trajectory's own
    final sample and v from the configured denoiser, z-scored across the batch (or not);
    loss = -w * (1 / L) * sum over positions masked in x_t of log p_student(x_0^l | x_t).

    Kills: alpha dropped, the clamp bounds swapped or one-sided, the z-score off (mean / std swapped,
    no centring, its 1e-8 guard subtracted: visible with rewards of scale 1e-9), the 1 / L missing."""
    models = three_models()
    ctx = context(models, reward=lambda seqs: [scale * r for r in hand_reward(seqs)])
    method = VIDDx0(VIDDx0Config(alpha=ALPHA, clamp=clamp, normalize=normalize, timesteps=2,
                                 value=ValueConfig(denoiser="pretrained")))
    ex = method.collect(ctx, 12).examples
    x_t, x0 = ex["x_t"], ex["x0"]
    assert ((x0 == x_t) | (x_t == MASK)).all() and (x0 != MASK).all() and (x_t == MASK).any(-1).all()
    r0 = scale * np.array(hand_reward(DNA.decode(x0)))
    log_ratio = (r0 - scale * value_of(models["pretrained"], x_t)) / ALPHA
    ratio = np.clip(np.exp(log_ratio), 1 / clamp, clamp)
    if clamp < 10:
        assert (ratio == clamp).any() and (ratio == 1 / clamp).any()
    w = (ratio - ratio.mean()) / (ratio.std() + 1e-8) if normalize == "zscore" else ratio
    np.testing.assert_allclose(ex["weight"].numpy(), w, rtol=1e-5, atol=1e-6)
    loss = method.example_loss(ctx, ex)
    lp = model_log_probs(models["student"])
    masked = x_t == MASK
    by_hand = [-float(wi) / LENGTH * sum(float(lp[l, x[l]]) for l in range(LENGTH) if m[l])
               for wi, x, m in zip(ex["weight"], x0, masked)]
    np.testing.assert_allclose(loss.detach().numpy(), by_hand, rtol=1e-5, atol=1e-7)


def test_default_clip_caps_the_weights_at_a_million():
    """The default max_log_weight is log(1e6): rewards 100 times larger give weights of at most 1e6 (and some
    that reach it), not an overflow."""
    models = three_models()
    ctx = context(models, reward=lambda seqs: [100 * r for r in hand_reward(seqs)])
    weights = VIDD(VIDDConfig(alpha=ALPHA, timesteps=0)).collect(ctx, 16).examples["weight"].double()
    assert weights.max() == pytest.approx(1e6, rel=1e-6) and torch.isfinite(weights).all()


def test_vidd_x0_ratio_guard_and_statistics():
    """vidd-x0 bounds the log-ratio to [-50, 50] before exponentiating (with a clamp wider than e^50 the
    ratios of huge reward differences are exactly e^-50 or e^50), and logs the weights' effective sample
    size."""
    models = three_models()
    ctx = context(models, reward=lambda seqs: [1000 * r for r in hand_reward(seqs)])
    batch = VIDDx0(VIDDx0Config(alpha=ALPHA, clamp=1e300, normalize="none", timesteps=2,
                                value=ValueConfig(denoiser="pretrained"))).collect(ctx, 12)
    w = batch.examples["weight"].double().numpy()
    big = np.abs(np.log(w)) > 40
    assert big.any() and np.allclose(np.abs(np.log(w[big])), 50, atol=1e-4)
    assert batch.stats["ess"] == pytest.approx(w.sum() ** 2 / (len(w) * (w ** 2).sum()), rel=1e-5)


# ------------------------------------------------------------------------------------------- soft values
def partial_states():
    x = torch.tensor([[MASK, MASK, MASK, MASK], [0, MASK, 2, MASK], [MASK, 3, 3, 1], [1, 2, 3, 0],
                      [MASK, MASK, 1, MASK]])
    return x, torch.tensor([1.0, 0.5, 0.25, 0.0, 0.75])


@pytest.mark.parametrize("denoiser", ["rollout", "student", "pretrained"])
def test_argmax_value_is_the_reward_of_the_denoisers_completion(denoiser):
    """completions = 0: v(x) = r(x with every masked position set to the denoiser's argmax at the state's own
    time), one counted reward call per distinct completion; clean states keep their own reward. Batches of 2
    states, time-conditioned models (the argmax letters change with t).

    Kills: the wrong denoiser, states and times paired wrongly across batches."""
    models = {name: table_model(LENGTH, seed=s, time_conditioned=True) for name, s in
              (("student", 1), ("rollout", 2), ("pretrained", 3))}
    ctx = context(models)
    x, t = partial_states()
    assert len({tuple(model_log_probs(models[denoiser], ti).argmax(-1).tolist()) for ti in t}) > 2
    est = ValueEstimator(ValueConfig(denoiser=denoiser, batch_size=2), ALPHA)
    np.testing.assert_allclose(est(ctx, x, t), value_of(models[denoiser], x, t))
    assert ctx.reward.calls == len({tuple(row) for row in fill_argmax(models[denoiser], x, t).tolist()})


def test_vidd_values_are_taken_at_each_states_own_time():
    """With a time-conditioned value denoiser, v(x_t) is taken at the roll-in time t_k of x_t and v(x_s) at the
    next grid time t_{k+1}.

    Kills: x_s valued at x_t's time (or any other grid time)."""
    models = {name: table_model(LENGTH, seed=s, time_conditioned=True) for name, s in
              (("student", 1), ("rollout", 2), ("pretrained", 3))}
    ctx = context(models)
    batch = VIDD(VIDDConfig(alpha=ALPHA, timesteps=0, max_log_weight=None)).collect(ctx, 16)
    ex = batch.examples
    times = models["student"].grid(STEPS)[0].float()
    k = (times[None, :] - ex["t"][:, None]).abs().argmin(-1)
    assert torch.allclose(times[k], ex["t"]) and (k < STEPS).all()
    v_t = value_of(models["student"], ex["x_t"], times[k])
    v_s = value_of(models["student"], ex["x_s"], times[k + 1])
    np.testing.assert_allclose(ex["weight"].numpy(), np.exp((v_s - v_t) / ALPHA), rtol=1e-5)
    assert not np.allclose(value_of(models["student"], ex["x_s"], times[k]), v_s)


def test_soft_value_with_completions_is_log_mean_exp():
    """completions = M: v(x) = alpha log mean_m exp(r(c_m) / alpha) over M completions c_m sampled from the
    denoiser (replayed from the same seed), which keep every unmasked position. Rewards and alpha are
    chosen so a plain mean of r differs clearly from the log-mean-exp.

    Kills: a plain mean instead of the log-mean-exp, alpha dropped from it, completions that do not keep the
    revealed letters."""
    model = table_model(LENGTH, seed=4, scale=0.3)  # spread: the completions differ
    ctx = make_context(model, reward=hand_reward, steps=STEPS)
    x, t = partial_states()
    est = ValueEstimator(ValueConfig(denoiser="student", completions=6, batch_size=2), ALPHA)
    ctx.generator.manual_seed(7)
    comps = est.completions(ctx, x, t)
    assert comps.shape == (len(x), 6, LENGTH)
    known = (x != MASK).unsqueeze(1).expand_as(comps)
    assert torch.equal(comps[known], x.unsqueeze(1).expand_as(comps)[known])
    ctx.generator.manual_seed(7)
    v = est(ctx, x, t)
    r = np.array(hand_reward(DNA.decode(comps.reshape(-1, LENGTH)))).reshape(len(x), 6)
    expected = ALPHA * np.log(np.mean(np.exp(r / ALPHA), axis=1))
    np.testing.assert_allclose(v, expected, rtol=1e-10)
    assert np.abs(expected - r.mean(1))[:3].min() > 0.05  # a plain mean would be told apart
    assert v[3] == pytest.approx(hand_reward(DNA.decode(x[3:4]))[0])  # a clean state: its own reward


def test_soft_value_completions_follow_the_denoiser_distribution():
    """With many completions the soft value of the fully masked state converges to
    alpha log sum_x p(x) exp(r(x) / alpha), p(x) = prod_l softmax(table)[l, x_l] (computed by enumeration).

    Kills: completions taken as the argmax, or drawn from another distribution than the denoiser's."""
    import itertools

    length, alpha, m = 2, 1.0, 20000
    model = table_model(length, seed=5, scale=1.0)
    reward = lambda seqs: [float(2 * (s[0] == "G") + 1.5 * (s[1] == "T")) for s in seqs]  # noqa: E731
    ctx = make_context(model, reward=reward, steps=STEPS)
    lp = model_log_probs(model).numpy()
    pairs = list(itertools.product(range(DNA.size), repeat=2))
    p = np.array([np.exp(lp[0, a] + lp[1, b]) for a, b in pairs])
    e = np.exp(np.array(reward([DNA.letters[a] + DNA.letters[b] for a, b in pairs])) / alpha)
    exact = alpha * np.log(p @ e)
    se = alpha * np.sqrt(p @ (e - p @ e) ** 2) / (np.sqrt(m) * (p @ e))  # delta method
    est = ValueEstimator(ValueConfig(completions=m), alpha)
    v = est(ctx, torch.full((1, length), MASK), torch.ones(1))[0]
    argmax = reward(DNA.decode(fill_argmax(model, torch.full((1, length), MASK))))[0]
    assert abs(v - exact) < 4 * se and abs(argmax - exact) > 20 * se, (v, exact, se, argmax)
