"""VIDD and the trainer: exact toy convergence, gradient signs, weight numerics, budget, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vidd
from support.toy import all_states, exact_sample_distribution, toy_model
from vidd.core import config as cfg
from vidd.core.runfolder import RunFolder
from vidd.diffusion.masked import MaskedDiffusion
from vidd.core.alphabets import DNA
from vidd import FinetuneConfig, finetune
from vidd.training.context import Context
from vidd.training.objectives import VIDD, VIDDConfig
from vidd.training.objectives.base import effective_sample_size, importance_weights
from vidd.rewards.counted import CountedReward, RewardFailure, RewardPolicy


def g_reward(seqs):
    return [float(s.count("G")) + 1.5 * ("CG" in s) for s in seqs]


def small_config(**over):
    base = {"iterations": 4, "steps": 4, "batch_size": 8, "accumulation": 2, "lr": 3e-3, "eval_every": 2,
            "eval_samples": 8, "final_samples": 8, "checkpoint_every": 2, "likelihood_samples": 2,
            "method": {"name": "vidd", "update_interval": 2, "timesteps": 2}}
    return cfg.build(FinetuneConfig, cfg.merge(base, over))


def kl(p, q):
    return float((p * (p.log() - q.log())).sum())


def test_vidd_moves_exact_distribution_toward_soft_optimal():
    """Length-4 DNA (256 sequences): the sampler's exact distribution is computed by dynamic
    programming; single-round VIDD (roll-out = pretrained, K > iterations) must cut
    KL(p* || p_theta) to p*(x) = p_pre(x) exp(r(x)/alpha) / Z by more than half."""
    model, steps, alpha = toy_model(), 4, 1.0
    rewards = torch.tensor(g_reward(DNA.decode(all_states(model, False))), dtype=torch.float64)
    with torch.no_grad():
        p_pre = exact_sample_distribution(model, steps)
    target = p_pre * torch.exp(rewards / alpha)
    target /= target.sum()
    config = cfg.build(FinetuneConfig, {
        "iterations": 60, "steps": steps, "batch_size": 64, "accumulation": 1, "lr": 3e-3, "eval_every": 0,
        "eval_samples": 8, "log_rollin_reward": False, "method": {"name": "vidd", "update_interval": 1000, "alpha": alpha}})
    result = finetune(model, g_reward, config, log=lambda *a: None)
    with torch.no_grad():
        p_after = exact_sample_distribution(result.model, steps)
    before, after = kl(target, p_pre), kl(target, p_after)
    assert after < 0.5 * before, (before, after)
    tv_before, tv_after = float((target - p_pre).abs().sum() / 2), float((target - p_after).abs().sum() / 2)
    assert tv_after < 0.7 * tv_before


def test_lazy_updates_tilt_further_than_one_round():
    """With the roll-out model refreshed every K iterations each round tilts again (p_pre exp(k r / alpha)):
    the expected reward passes the single-round target's."""
    model, steps = toy_model(seed=1), 4
    rewards = torch.tensor(g_reward(DNA.decode(all_states(model, False))), dtype=torch.float64)
    with torch.no_grad():
        p_pre = exact_sample_distribution(model, steps)
    target = p_pre * torch.exp(rewards)
    target /= target.sum()
    config = cfg.build(FinetuneConfig, {
        "iterations": 60, "steps": steps, "batch_size": 64, "accumulation": 1, "lr": 3e-3, "eval_every": 0,
        "eval_samples": 8, "log_rollin_reward": False, "method": {"name": "vidd", "update_interval": 5}})
    result = finetune(model, g_reward, config, log=lambda *a: None)
    with torch.no_grad():
        p_after = exact_sample_distribution(result.model, steps)
    assert float((p_after * rewards).sum()) > float((target * rewards).sum())


def test_gradient_sign_follows_weight():
    """One SGD step on -w log p(x_s | x_t): a positive weight raises p of the revealed letter, and a larger
    weight raises it more."""
    x_t = torch.full((1, 3), DNA.mask_index)
    x_s = x_t.clone()
    x_s[0, 1] = 2  # reveal G at position 2
    gains = []
    for w in (0.5, 2.0):
        model = toy_model(length=3)
        ctx = Context(model, model, model, CountedReward(g_reward), torch.Generator(), 4)
        method = VIDD(VIDDConfig())
        ex = {"x_t": x_t, "x_s": x_s, "t": torch.ones(1), "weight": torch.tensor([w])}
        with torch.no_grad():
            before = float(model.denoise(x_t, torch.ones(1))[0, 1, 2])
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        method.example_loss(ctx, ex).sum().backward()
        opt.step()
        with torch.no_grad():
            gains.append(float(model.denoise(x_t, torch.ones(1))[0, 1, 2]) - before)
    assert 0 < gains[0] < gains[1]


def test_importance_weights_numerics():
    huge = np.array([0.0, 800.0, 1e4])
    clipped = importance_weights(huge, self_normalize=False, max_log_weight=10.0)
    assert np.isfinite(clipped).all() and clipped.max() == pytest.approx(np.exp(10.0))
    normed = importance_weights(huge, self_normalize=True, max_log_weight=None)
    assert np.isfinite(normed).all() and normed.mean() == pytest.approx(1.0)
    with pytest.raises(FloatingPointError, match="overflow"):
        importance_weights(huge, self_normalize=False, max_log_weight=None)
    with pytest.raises(FloatingPointError, match="non-finite"):
        importance_weights(np.array([0.0, np.nan]), False, None)
    assert effective_sample_size(np.ones(4)) == pytest.approx(1.0)
    assert effective_sample_size(np.array([1.0, 0, 0, 0])) == pytest.approx(0.25)


def test_counted_reward_cache_and_policies():
    calls = []

    def reward(seqs):
        calls.append(list(seqs))
        return [np.nan if s == "AAAA" else 1.0 for s in seqs]

    counted = CountedReward(reward, RewardPolicy(on_failure="penalty", penalty=-5.0))
    out = counted(["CCCC", "CCCC", "AAAA", "GGGG"])
    assert out.tolist() == [1.0, 1.0, -5.0, 1.0]
    assert counted.calls == 3 and counted.failures == 1
    counted(["CCCC", "GGGG"])
    assert counted.calls == 3 and len(calls) == 1  # answered from the cache
    strict = CountedReward(reward)
    with pytest.raises(RewardFailure, match="non-finite"):
        strict(["AAAA"])

    def broken(seqs):
        raise RuntimeError("docking crashed")

    with pytest.raises(RewardFailure, match="docking crashed"):
        CountedReward(broken)(["ACGT"])
    assert CountedReward(broken, RewardPolicy(on_failure="penalty"))(["ACGT"]).tolist() == [-10.0]


def test_budget_stops_training_and_counts_exactly(monkeypatch):
    sent, monitored, in_monitor = [], [], [False]

    def reward(seqs):
        (monitored if in_monitor[0] else sent).extend(seqs)
        return g_reward(seqs)

    monitor_fn = CountedReward.monitor

    def tagged_monitor(self, seqs):
        in_monitor[0] = True
        try:
            return monitor_fn(self, seqs)
        finally:
            in_monitor[0] = False

    monkeypatch.setattr(CountedReward, "monitor", tagged_monitor)
    config = small_config(iterations=50, reward={"budget": 40})
    result = finetune(toy_model(), reward, config, log=lambda *a: None)
    assert result.reward_calls <= 40
    monitor = result.metrics[-1]["monitor_reward_calls"]
    assert monitor > 0
    # every sequence sent to the reward is counted, training and monitoring apart
    assert result.reward_calls == len(sent) and monitor == len(monitored)
    assert len(set(sent)) == len(sent)  # with the cache no training sequence is sent (or paid for) twice
    assert len(result.metrics) < 50


def test_run_folder_and_resume_is_bit_identical(tmp_path):
    full = finetune(toy_model(), g_reward, small_config(), out=tmp_path / "full", log=lambda *a: None)

    class Killed(KeyboardInterrupt):
        pass

    state = {"n": 0}

    def dies_in_iteration_three(seqs):
        state["n"] += 1
        if state["n"] > 14:  # past the checkpoint at iteration 2
            raise Killed()
        return g_reward(seqs)

    with pytest.raises(Killed):
        finetune(toy_model(), dies_in_iteration_three, small_config(), out=tmp_path / "cut", log=lambda *a: None)
    assert (tmp_path / "cut" / "checkpoints" / "last.pt").is_file()
    resumed = finetune(toy_model(), g_reward, small_config(), out=tmp_path / "cut", resume=True, log=lambda *a: None)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)

    def stable(path):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]

    assert stable(tmp_path / "full" / "metrics.jsonl") == stable(tmp_path / "cut" / "metrics.jsonl")
    run = tmp_path / "full"
    for name in ("config.yaml", "metrics.csv", "final_eval.json", "checkpoints/student/config.json",
                 "samples/final.fasta"):
        assert (run / name).is_file(), name
    final = json.loads((run / "final_eval.json").read_text())
    assert final["reward_calls"] == full.reward_calls and final["iterations"] == 4
    with pytest.raises(FileExistsError):
        finetune(toy_model(), g_reward, small_config(), out=run, log=lambda *a: None)


def test_config_errors_name_the_field():
    with pytest.raises(cfg.ConfigError, match="unknown method"):
        cfg.build(FinetuneConfig, {"method": "nope"})
    with pytest.raises(cfg.ConfigError, match=r"method.rollin.beta"):
        cfg.build(FinetuneConfig, {"method": {"rollin": {"beta": 2.0}}})
    with pytest.raises(cfg.ConfigError, match=r"unknown field"):
        cfg.build(FinetuneConfig, {"method": {"alpah": 1.0}})
    with pytest.raises(cfg.ConfigError, match="allowed values"):
        cfg.build(FinetuneConfig, {"method": {"value": {"denoiser": "teacher"}}})
    with pytest.raises(cfg.ConfigError, match=r"unknown field.*alpha"):  # alpha is VIDD's, not DDPO's
        cfg.build(FinetuneConfig, {"method": {"name": "ddpo", "alpha": 0.5}})


@pytest.mark.parametrize("over", [
    {"method": {"value": {"completions": 3}, "timesteps": 2}},
    {"method": {"rollin": {"beta": 0.5, "beta_end": 1.0, "replay_size": 16, "replay_fraction": 0.25}}},
    {"method": {"self_normalize": True, "use_value_xt": False, "value": {"denoiser": "rollout"}}},
    {"method": {"baseline": "mean", "value": {"denoiser": "pretrained"}, "rollin": {"source": "student"}}},
    {"method": "vidd-x0"},
])
def test_method_options_run(over):
    result = finetune(toy_model(), g_reward, small_config(**over), log=lambda *a: None)
    assert len(result.metrics) == 4 and np.isfinite(result.metrics[-1]["loss"])


def test_nan_rewards_follow_the_declared_policy(tmp_path):
    def flaky(seqs):
        return [np.nan if s.startswith("A") else float(s.count("G")) for s in seqs]

    result = finetune(toy_model(), flaky, small_config(reward={"on_failure": "penalty", "penalty": -3.0}),
                      log=lambda *a: None)
    assert result.metrics[-1]["reward_failures"] > 0 and np.isfinite(result.metrics[-1]["loss"])
    run = tmp_path / "strict"
    with pytest.raises(RewardFailure, match="non-finite"):
        finetune(toy_model(), flaky, small_config(), out=run, log=lambda *a: None)
    assert not (run / "checkpoints" / "student").exists()  # nothing half-finished is presented as done


def test_a_reward_that_keeps_failing_ends_the_run(tmp_path):
    def broken(seqs):
        raise RuntimeError("oracle server down")

    everything = r"failed on (\d+) of the \1 sequences scored \(100%\), more than reward.max_failure_fraction = 0.5"
    with pytest.raises(RewardFailure, match=everything):
        finetune(toy_model(), broken, small_config(reward={"on_failure": "penalty"}), out=tmp_path / "r",
                 log=lambda *a: None)
    assert RunFolder(tmp_path / "r").in_progress() and len(RunFolder(tmp_path / "r").read_metrics()) == 1
    result = finetune(toy_model(), broken, small_config(reward={"on_failure": "penalty", "max_failure_fraction": 1}),
                      log=lambda *a: None)  # 1: never stop
    assert result.metrics[-1]["reward_failures"] == result.reward_calls + result.metrics[-1]["monitor_reward_calls"]


def test_a_fine_tuned_model_records_its_provenance(tmp_path):
    base = toy_model()
    result = finetune(base, g_reward, small_config(), out=tmp_path / "run", log=lambda *a: None)
    saved = MaskedDiffusion.from_pretrained(tmp_path / "run" / "checkpoints" / "student")
    origin = saved.metadata
    assert origin == result.model.metadata
    assert origin["base_model"] == {"sha256": base.weights_sha256(), "metadata": base.metadata}
    assert (origin["task"], origin["method"], origin["iteration"]) == ("custom", "vidd", 4)
    assert origin["reward_calls"] == result.reward_calls and origin["vidd_version"] == vidd.__version__
    assert origin["config"] == cfg.to_dict(small_config())
    # a checkpoint records the same, as of its iteration
    assert MaskedDiffusion.load(tmp_path / "run" / "checkpoints" / "last.pt").metadata["iteration"] == 4


def test_resume_refuses_another_base_model(tmp_path):
    finetune(toy_model(), g_reward, small_config(iterations=2), out=tmp_path / "run", log=lambda *a: None)
    with pytest.raises(cfg.ConfigError, match="started from another model"):
        finetune(toy_model(seed=1), g_reward, small_config(iterations=2), out=tmp_path / "run", resume=True,
                 log=lambda *a: None)
    resumed = finetune(toy_model(), g_reward, out=tmp_path / "run", resume=True, log=lambda *a: None)
    assert len(resumed.metrics) == 2  # without a config, a resumed run keeps its own


def test_resume_may_change_only_the_length_evaluation_and_logistics_of_a_run():
    stored = small_config()
    assert small_config(iterations=9, eval_every=3, threads=1).resume_changes(stored) == {
        "eval_every": [2, 3], "iterations": [4, 9], "threads": [0, 1]}
    for change, field in (({"method": "ddpo"}, "method.name"), ({"seed": 5}, "seed"), ({"batch_size": 4}, "batch_size"),
                          ({"method": {"alpha": 0.5}}, "method.alpha"), ({"lr": 1e-2}, "lr")):
        with pytest.raises(cfg.ConfigError, match=f"--resume: {field}: .* would make it another run"):
            small_config(**change).resume_changes(stored)


def test_overlap_collects_the_next_chunk_while_rewards_run_and_changes_nothing():
    """With `overlap`, chunk 1 starts sampling while chunk 0 is still inside its reward call (the
    reward of the first call waits for a second chunk to begin; without overlap it never would), and
    the run is identical to one without overlap."""
    import threading

    from vidd.training.trainer import Trainer

    def run(overlap: bool):
        second_chunk_started, first_call, overlapped = threading.Event(), [True], []

        def reward(seqs):
            if first_call[0]:
                first_call[0] = False
                overlapped.append(second_chunk_started.wait(timeout=20 if overlap else 0.1))
            return g_reward(seqs)

        config = small_config(iterations=3, accumulation=4, overlap=overlap, log_rollin_reward=False)
        trainer = Trainer(config, toy_model(), reward, log=lambda *a: None)
        collect = trainer.method.collect

        def watched_collect(ctx, n):
            if ctx.chunk == 1:
                second_chunk_started.set()
            return collect(ctx, n)

        trainer.method.collect = watched_collect
        result = trainer.run()
        return result, overlapped[0]

    plain, plain_overlapped = run(False)
    both, both_overlapped = run(True)
    assert both_overlapped and not plain_overlapped
    for a, b in zip(plain.model.state_dict().values(), both.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [r["loss"] for r in plain.metrics] == [r["loss"] for r in both.metrics]
    assert plain.reward_calls == both.reward_calls
