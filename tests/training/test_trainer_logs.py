"""The trainer's logged evaluation metrics against independent computations: diversity, uniqueness and the
training-reward median of the samples it wrote, and the logged KL(p_theta || p_pre) of the chain against its
exact value by dynamic programming on the enumerable toy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from support.toy import all_states, exact_chain_kl, g_reward, toy_model, transition_matrices
from vidd.core import config as cfg
from vidd.core.seqio import read_fasta
from vidd.eval.metrics import diversity, uniqueness
from vidd import FinetuneConfig, finetune

STEPS, EVAL_SAMPLES = 4, 3000


def trajectory_log_ratios(p, q, n: int, seed: int) -> np.ndarray:
    """log p(chain) - log q(chain) of n trajectories sampled from p, read off the exact transition matrices."""
    states = all_states(p, with_mask=True)
    powers = (p.alphabet.size + 1) ** torch.arange(p.length - 1, -1, -1)
    with torch.no_grad():
        fp, fq = transition_matrices(p, STEPS), transition_matrices(q, STEPS)
        traj = p.sample(n, STEPS, torch.Generator().manual_seed(seed), record=True)
    index = (traj.states * powers).sum(-1)  # (T + 1, n)
    assert torch.equal(states[index[-1]], traj.final)
    out = torch.zeros(n, dtype=torch.float64)
    for k in range(STEPS):
        a, b = index[k], index[k + 1]
        out += fp[k][a, b].log() - fq[k][a, b].log()
    return out.numpy()


def test_logged_diversity_uniqueness_reward_and_kl(tmp_path):
    """Every evaluation row: eval_diversity = diversity(samples), eval_uniqueness = uniqueness(samples),
    eval_train_reward_median = median of the reward, on the samples written for that iteration. The last
    row's eval_kl_to_pretrained (a Monte Carlo mean over 3000 trajectories) is within 5 standard errors of the
    exact chain KL, which is far from 0.

    Kills: the logged diversity computed as 1 - diversity (or of other samples), the KL's sign or a step
    left out of its sum, a KL of the wrong pair of models."""
    model = toy_model(seed=0)
    config = cfg.build(FinetuneConfig, {
        "iterations": 3, "steps": STEPS, "batch_size": 32, "accumulation": 1, "lr": 3e-2, "eval_every": 1,
        "eval_samples": EVAL_SAMPLES, "final_samples": 4, "likelihood_samples": 1, "log_rollin_reward": False})
    run = tmp_path / "run"
    result = finetune(model, g_reward, config, out=run, log=lambda *a: None)
    assert [r["iteration"] for r in result.metrics] == [1, 2, 3]
    for row in result.metrics:
        seqs = [s for _, s in read_fasta(run / "samples" / f"iter_{row['iteration']:05d}.fasta")]
        assert len(seqs) == EVAL_SAMPLES
        assert row["eval_diversity"] == pytest.approx(diversity(seqs), rel=1e-12)
        assert row["eval_uniqueness"] == pytest.approx(uniqueness(seqs), rel=1e-12)
        assert row["eval_train_reward_median"] == pytest.approx(float(np.median(g_reward(seqs))))
    assert len({r["eval_diversity"] for r in result.metrics}) == 3  # the samples change between evaluations

    student = result.model
    with torch.no_grad():
        exact = exact_chain_kl(student, model, STEPS)
    ratios = trajectory_log_ratios(student, model, 2000, seed=123)
    se = ratios.std() / np.sqrt(EVAL_SAMPLES)
    assert abs(ratios.mean() - exact) < 5 * ratios.std() / np.sqrt(len(ratios))  # the helper agrees with the DP
    assert exact > 30 * se, (exact, se)
    logged = result.metrics[-1]["eval_kl_to_pretrained"]
    assert abs(logged - exact) < 5 * se, (logged, exact, se)
