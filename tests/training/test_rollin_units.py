"""Roll-in: the beta schedule, which model each trajectory comes from, and the replay buffer.

The models are near-deterministic table denoisers (`toy.table_model` with a large scale): each always
reveals its own letter at each position, so a trajectory's final sample tells which model drew it."""

from __future__ import annotations

import pytest
import torch

from support.toy import make_context, table_model
from vidd.training.rollin import RollIn, RollInConfig

STEPS = 4


def models():
    return {name: table_model(4, seed=s, scale=40.0) for name, s in (("student", 1), ("rollout", 2), ("pretrained", 3))}


def origin(finals: torch.Tensor, ms: dict) -> list[str]:
    letters = {name: m.backbone.table.argmax(-1) for name, m in ms.items()}
    out = []
    for row in finals:
        names = [name for name, best in letters.items() if torch.equal(row, best)]
        assert len(names) == 1, row
        out.append(names[0])
    return out


def test_beta_schedule_by_hand():
    cfg = RollInConfig(beta=0.2, beta_end=0.8)
    assert [cfg.beta_at(i, 4) for i in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert cfg.beta_at(7, 4) == pytest.approx(0.8)  # past the end: stays at beta_end
    assert cfg.beta_at(3, 1) == 0.2  # a one-iteration run: beta
    assert RollInConfig(beta=0.3).beta_at(5, 10) == 0.3  # no schedule


@pytest.mark.parametrize("source", ["rollout", "student"])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_trajectories_come_from_the_exploiting_model_or_the_pretrained_one(source, beta):
    ms = models()
    ctx = make_context(ms["student"], ms["rollout"], ms["pretrained"], steps=STEPS)
    traj = RollIn(RollInConfig(beta=beta, source=source)).sample(ctx, 12)[0]
    assert traj.states.shape == (STEPS + 1, 12, 4) and torch.equal(traj.times, ms["student"].grid(STEPS)[0])
    assert origin(traj.final, ms) == [source if beta == 1.0 else "pretrained"] * 12


def test_beta_mixes_in_proportion_and_follows_the_schedule():
    """beta = 0.3: about 30% of 600 trajectories from the exploiting model (within 5 standard errors), listed
    first. With beta 0 -> 1 over 3 iterations, the last iteration rolls in from the exploiting model only."""
    ms = models()
    ctx = make_context(ms["student"], ms["rollout"], ms["pretrained"], steps=STEPS)
    names = origin(RollIn(RollInConfig(beta=0.3)).sample(ctx, 600)[0].final, ms)
    n = names.count("rollout")
    assert abs(n - 180) < 5 * (600 * 0.3 * 0.7) ** 0.5
    assert names == ["rollout"] * n + ["pretrained"] * (600 - n)
    rollin = RollIn(RollInConfig(beta=0.0, beta_end=1.0))
    ctx.total_iterations = 3
    ctx.iteration = 0
    assert set(origin(rollin.sample(ctx, 10)[0].final, ms)) == {"pretrained"}
    ctx.iteration = 2
    assert set(origin(rollin.sample(ctx, 10)[0].final, ms)) == {"rollout"}


def test_replay_buffer_mixes_earlier_roll_ins_and_keeps_the_newest():
    """replay_size 5, replay_fraction 0.5: the first batch is all fresh (the buffer is empty); committed in
    chunk order, the buffer keeps the 5 newest trajectories; the next batch of 4 has round(0.5 * 4) = 2 fresh
    trajectories followed by 2 drawn from the buffer, and only the fresh ones wait to be committed."""
    ms = models()
    ctx = make_context(ms["student"], ms["rollout"], ms["pretrained"], steps=STEPS)
    rollin = RollIn(RollInConfig(beta=1.0, replay_size=5, replay_fraction=0.5))
    ctx.chunk = 1
    first = rollin.sample(ctx, 3)[0]
    assert list(rollin.fresh) == [1] and torch.equal(rollin.fresh[1], first.states)
    older = torch.full((STEPS + 1, 4, 4), 0)
    older[-1] = torch.arange(4)[:, None]  # four recognisable "trajectories" of an earlier chunk 0
    rollin.commit({1: rollin.fresh[1], 0: older})
    assert rollin.fresh == {}
    assert len(rollin.buffer) == 5  # 4 + 3 committed, the 2 oldest dropped
    assert [int(b[-1, 0]) for b in rollin.buffer[:2]] == [2, 3]  # chunk 0 first, its last two kept
    assert all(torch.equal(b, first.states[:, i]) for i, b in enumerate(rollin.buffer[2:]))

    ctx.chunk = 0
    batch = rollin.sample(ctx, 4)[0]
    assert batch.states.shape[1] == 4
    assert torch.equal(rollin.fresh[0], batch.states[:, :2])
    buffered = [b for b in rollin.buffer]
    for i in (2, 3):
        assert any(torch.equal(batch.states[:, i], b) for b in buffered)
    assert not any(torch.equal(batch.states[:, 0], b) for b in buffered[:2])


def test_no_replay_keeps_nothing():
    ms = models()
    ctx = make_context(ms["student"], ms["rollout"], ms["pretrained"], steps=STEPS)
    rollin = RollIn(RollInConfig())
    rollin.sample(ctx, 4)[0]
    assert rollin.fresh == {} and rollin.buffer == []


def test_a_methods_chunk_state_is_its_fresh_roll_ins_and_merging_commits_them():
    """RollInMethod: chunk_state() hands the trainer this process's fresh roll-ins by chunk;
    merge_chunk_state() commits the union to the replay buffer."""
    from vidd.training.objectives import VIDD, VIDDConfig

    ms = models()
    ctx = make_context(ms["student"], ms["rollout"], ms["pretrained"], steps=STEPS)
    method = VIDD(VIDDConfig(rollin=RollInConfig(replay_size=8, replay_fraction=0.5)))
    ctx.chunk = 3
    method.collect(ctx, 4)
    state = method.chunk_state()
    assert list(state) == [3] and state[3]["rollin"].shape == (STEPS + 1, 4, 4)
    method.merge_chunk_state(state)
    assert len(method.rollin.buffer) == 4 and method.chunk_state() == {}
