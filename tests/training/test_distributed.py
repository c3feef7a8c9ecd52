"""Data-parallel fine-tuning (torch.distributed, gloo, 2 CPU processes) reproduces the single-process run
with the same global batch: weights, logged metrics, reward accounting, run folder; and resume."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from vidd.core import config as cfg
from vidd.core.alphabets import DNA
from vidd.core.config import ConfigError
from vidd.diffusion.pretrain import ModelConfig
from vidd import FinetuneConfig, finetune

QUIET = {"log": lambda *a: None}
RUNS = {  # two methods; vidd with a replay buffer (state carried across iterations and merged over processes)
    "vidd": {"method": {"name": "vidd", "update_interval": 2, "timesteps": 2,
                        "rollin": {"replay_size": 6, "replay_fraction": 0.25}}},
    "ddpo": {"method": {"name": "ddpo", "timesteps": 2}},
}


class GC:
    """GC content; remembers every sequence it is sent."""

    def __init__(self):
        self.sent: list[str] = []

    def __call__(self, seqs):
        self.sent.extend(seqs)
        return [(s.count("G") + s.count("C")) / len(s) for s in seqs]


def tiny_model():
    torch.manual_seed(0)
    return ModelConfig(hidden=8, stacks=1, dilations=[1, 2]).build(DNA, 6)


def config(name: str, **over) -> FinetuneConfig:
    base = {"iterations": 3, "steps": 4, "batch_size": 4, "accumulation": 2, "lr": 3e-3, "eval_every": 2,
            "eval_samples": 4, "final_samples": 4, "likelihood_samples": 2, "checkpoint_every": 1}
    return cfg.build(FinetuneConfig, cfg.merge(cfg.merge(base, RUNS[name]), over))


def _worker(rank: int, ports: list[int], folder: str) -> None:
    """One of two torchrun-like processes: the trainer starts (and ends) the process group itself from the
    environment. vidd runs 2 iterations, then is resumed to 3; ddpo runs 3."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1")
    folder = Path(folder)
    plan = [("vidd", {"iterations": 2}, False), ("vidd", {}, True), ("ddpo", {}, False)]
    sent = {name: GC() for name in RUNS}
    for port, (name, over, resume) in zip(ports, plan):
        os.environ["MASTER_PORT"] = str(port)
        result = finetune(tiny_model(), sent[name], config(name, **over), out=folder / name, resume=resume, **QUIET)
        torch.save({"state": result.model.state_dict(), "metrics": result.metrics, "calls": result.reward_calls,
                    "sent": len(sent[name].sent), "initialized": torch.distributed.is_initialized()},
                   folder / f"{name}-rank{rank}.pt")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def stable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]


def test_two_processes_match_one_process(tmp_path):
    single = {}
    for name in RUNS:
        reward = GC()
        result = finetune(tiny_model(), reward, config(name), out=tmp_path / "single" / name, **QUIET)
        single[name] = (result, len(reward.sent))
    (tmp_path / "multi").mkdir()
    mp.spawn(_worker, args=(free_ports(3), str(tmp_path / "multi")), nprocs=2, join=True)

    for name, (result, sent) in single.items():
        ranks = [torch.load(tmp_path / "multi" / f"{name}-rank{r}.pt", weights_only=False) for r in (0, 1)]
        for key, value in result.model.state_dict().items():
            torch.testing.assert_close(ranks[0]["state"][key], value, atol=1e-6, rtol=1e-5)
            assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key  # the processes stay in sync
        assert not any(r["initialized"] for r in ranks)  # the trainer destroyed the group it created
        expected = stable(result.metrics)
        for r in ranks:
            got = stable(r["metrics"])
            assert [sorted(row) for row in got] == [sorted(row) for row in expected]
            for a, b in zip(got, expected):
                assert a["reward_calls"] == b["reward_calls"] and a["monitor_reward_calls"] == b["monitor_reward_calls"]
                torch.testing.assert_close({k: v for k, v in a.items() if v is not None},
                                           {k: v for k, v in b.items() if v is not None}, atol=1e-6, rtol=1e-5)
            assert r["calls"] == result.reward_calls
        # the two processes together sent at least the single run's distinct sequences, each counted once
        assert ranks[0]["sent"] + ranks[1]["sent"] >= sent

        run, ref = tmp_path / "multi" / name, tmp_path / "single" / name
        history = [Path("config_history.jsonl")] if name == "vidd" else []  # resumed with 3 iterations instead of 2
        assert sorted(p.relative_to(run) for p in run.rglob("*")) == sorted(
            [p.relative_to(ref) for p in ref.rglob("*")] + history)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert len(rows) == 3  # written once, by rank 0
        assert stable(rows) == stable(ranks[0]["metrics"])
        final, ref_final = (json.loads((p / "final_eval.json").read_text()) for p in (run, ref))
        assert {k: v for k, v in final.items() if k != "wall_seconds"} == \
            {k: v for k, v in ref_final.items() if k != "wall_seconds"}


def test_accumulation_must_split_evenly_over_the_processes(monkeypatch):
    c = config("vidd", accumulation=3)
    with pytest.raises(ConfigError, match=r"accumulation: 3 chunks .* over 2 processes.*accumulation=4 with "
                                          r"batch_size=3 keeps the 12 trajectories"):
        c.check_world(2)
    c.check_world(3)
    assert config("vidd", accumulation=4).derived(2)["accumulation steps per process"] == 2
    monkeypatch.setenv("WORLD_SIZE", "2")  # as under torchrun: refused before any process group is started
    with pytest.raises(ConfigError, match="multiple of the number of processes"):
        finetune(tiny_model(), GC(), c, **QUIET)
