"""The fine-tuning loop: collect, distil, update, evaluate, log, checkpoint, resume."""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from vidd.core.atomic import atomic_open
from vidd.core.config import ConfigError, option, to_dict
from vidd.core.atomic import atomic_torch_save
from vidd.diffusion.masked import MaskedDiffusion
from vidd.eval.metrics import finite_median
from vidd.finetune.context import Context
from vidd.finetune.distributed import ProcessGroup, merge_reward_accounting, world_size
from vidd.finetune.objectives import (
    DDPOConfig, DDPOx0Config, DDPPConfig, DRAKESConfig, Method, StandardConfig, VIDDConfig, VIDDx0Config,
)
from vidd.rewards.base import Reward, as_reward
from vidd.rewards.counted import CountedReward, RewardPolicy
from vidd.samples import SampleFormat

PHASES = ("rollin", "rollout", "value", "reward", "backward", "eval")


@dataclass
class FinetuneConfig:
    method: str = option("vidd", "fine-tuning method (one of the registered methods, e.g. vidd, vidd-x0)")
    iterations: int = option(200, "outer iterations S (one optimiser step each)")
    steps: int = option(128, "denoising steps T of every roll-in and evaluation sample")
    batch_size: int = option(32, "roll-in trajectories per accumulation step")
    accumulation: int = option(4, "accumulation steps per optimiser step (with N processes each collects "
                                  "accumulation / N of them: the global batch does not change)")
    lr: float = option(1e-4, "Adam learning rate")
    weight_decay: float = option(0.0, "Adam weight decay")
    grad_clip: float = option(1.0, "gradient-norm clip")
    loss_chunk: int = option(256, "training examples per student forward/backward (memory bound)")
    reward: RewardPolicy = option(RewardPolicy(), "reward cache, budget and failure policy")
    log_rollin_reward: bool = option(True, "score each iteration's roll-in samples with the training reward "
                                           "(counted calls) to log reward statistics")
    eval_every: int = option(10, "iterations between evaluations of the student (0: only at the end)")
    eval_samples: int = option(64, "student samples per evaluation")
    final_samples: int = option(256, "student samples scored by the final evaluation (final_eval.json)")
    likelihood_samples: int = option(16, "Monte Carlo steps of the pretrained model's ELBO per sample")
    checkpoint_every: int = option(10, "iterations between checkpoints (the last iteration is always saved)")
    seed: int = option(0, "random seed (a CPU run is bit-reproducible, resumed or not)")
    threads: int = option(0, "torch CPU threads (0: torch default)")
    device: str = option("cpu", "torch device (`cuda` under torchrun: cuda:LOCAL_RANK)")
    overlap: bool = option(
        False, "collect two accumulation chunks at a time in threads, so one chunk samples its roll-ins while "
               "the other waits for its rewards (worth it when the reward runs on an executor, reward.executor; "
               "the results are the same as without)")
    distributed_backend: Literal["auto", "gloo", "nccl"] = option(
        "auto", "torch.distributed backend of a data-parallel run (torchrun, WORLD_SIZE > 1) when the trainer "
                "starts the process group: auto = nccl for CUDA devices, else gloo")
    vidd: VIDDConfig = option(VIDDConfig(), "settings of method vidd")
    vidd_x0: VIDDx0Config = option(VIDDx0Config(), "settings of method vidd-x0")
    standard: StandardConfig = option(StandardConfig(), "settings of method standard (single-round fine-tuning)")
    ddpo: DDPOConfig = option(DDPOConfig(), "settings of method ddpo (per-step likelihood ratio)")
    ddpo_x0: DDPOx0Config = option(DDPOx0Config(), "settings of method ddpo-x0 (the authors' x_0 ratio)")
    ddpp: DDPPConfig = option(DDPPConfig(), "settings of method ddpp")
    drakes: DRAKESConfig = option(DRAKESConfig(), "settings of method drakes (differentiable rewards only)")

    def validate(self):
        Method.lookup(self.method)
        for name in ("iterations", "steps", "batch_size", "accumulation", "loss_chunk", "eval_samples",
                     "final_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")

    def method_config(self):
        return getattr(self, self.method.replace("-", "_"))

    def check_world(self, world: int) -> None:
        """A data-parallel run of `world` processes keeps the global batch (batch_size x accumulation
        trajectories per update): each process collects accumulation / world of the chunks, so
        accumulation must be a multiple of world."""
        if world <= 1 or self.accumulation % world == 0:
            return
        total = self.batch_size * self.accumulation
        fits = [a for a in range(world, total + 1, world) if total % a == 0]
        if fits:
            a = min(fits, key=lambda a: (abs(a - self.accumulation), -a))
            hint = f"e.g. accumulation={a} with batch_size={total // a} keeps the {total} trajectories per update"
        else:
            a = -(-self.accumulation // world) * world
            hint = f"e.g. accumulation={a} ({self.batch_size * a} trajectories per update)"
        raise ConfigError(
            f"accumulation: {self.accumulation} chunks of batch_size {self.batch_size} cannot be split evenly over "
            f"{world} processes; accumulation must be a multiple of the number of processes ({hint})")

    def derived(self, world: int = 1) -> dict:
        section = self.method_config()
        per_traj = getattr(section, "timesteps", 0) or self.steps
        trajectories = self.batch_size * self.accumulation
        states = trajectories * min(per_traj, self.steps)
        value = getattr(section, "value", None)
        calls = states * (1 + getattr(section, "use_value_xt", True)) * max(1, value.completions if value else 1)
        calls += trajectories if self.log_rollin_reward else 0
        rows = {"trajectories per update": trajectories, "training states per update (at most)": states,
                "reward calls per iteration (at most, before caching)": calls}
        if world > 1:
            rows.update({"processes": world, "accumulation steps per process": self.accumulation // world,
                         "trajectories per process per update": trajectories // world})
        return rows


def chunk_generator(seed: int, iteration: int, chunk: int) -> torch.Generator:
    """The randomness of accumulation chunk `chunk` of iteration `iteration`: a function of the three numbers
    only (hashed by numpy's SeedSequence), so a chunk draws the same roll-ins whichever process collects it
    and a resumed run continues exactly."""
    state = np.random.SeedSequence([seed % 2 ** 64, iteration, chunk]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


@dataclass
class FinetuneResult:
    model: MaskedDiffusion
    metrics: list[dict] = field(default_factory=list)
    out: Path | None = None
    reward_calls: int = 0


class Trainer:
    """Single-process, or data-parallel under torchrun (docs/scaling.md): every process runs the same loop on
    its share of the accumulation chunks; the main process alone evaluates and writes the run folder."""

    def __init__(self, config: FinetuneConfig, pretrained: MaskedDiffusion, reward,
                 eval_reward: Reward | None = None, out: str | Path | None = None,
                 final_evaluator: Callable[[list[str]], dict] | None = None, log=print,
                 samples: SampleFormat | None = None):
        self.config = config
        config.check_world(world_size())
        self.group = ProcessGroup.join(config.distributed_backend, config.device)
        self.device = self.group.device
        self.samples = samples or SampleFormat()
        self.out = Path(out) if out else None
        self.log = log if self.group.main else (lambda *args, **kwargs: None)
        self.final_evaluator = final_evaluator
        if config.threads:
            torch.set_num_threads(config.threads)
        pretrained = pretrained.to(self.device).eval()
        self.group.broadcast_module(pretrained)  # every process starts from the main process's weights
        for p in pretrained.parameters():
            p.requires_grad_(False)
        student = copy.deepcopy(pretrained)
        for p in student.parameters():
            p.requires_grad_(True)
        rollout = copy.deepcopy(pretrained)
        self.ctx = Context(student, rollout, pretrained, CountedReward(reward, config.reward),
                           torch.Generator().manual_seed(config.seed), config.steps,
                           total_iterations=config.iterations)
        if self.group.world > 1:
            self.ctx.reward.journal = {}  # merged across processes after every iteration
        self.method = Method.lookup(config.method)(config.method_config())
        self.eval_reward = as_reward(eval_reward) if eval_reward is not None else None
        self.optimizer = torch.optim.Adam(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.metrics: list[dict] = []
        self.wall_seconds = 0.0

    # ----------------------------------------------------------- the loop
    def run(self, resume: bool = False) -> FinetuneResult:
        try:
            return self._run(resume)
        finally:
            self.group.close()

    def _run(self, resume: bool) -> FinetuneResult:
        cfg, ctx, group = self.config, self.ctx, self.group
        if self.out:
            group.on_main(lambda: self._prepare_folder(resume))
            if resume:
                self._resume()
        self.log("derived: " + ", ".join(f"{k} = {v}" for k, v in cfg.derived(group.world).items()))
        total = None if cfg.reward.budget else cfg.iterations  # a budget ends the run at an unknown iteration
        bar = tqdm(total=total, initial=ctx.iteration, desc=f"finetune {cfg.method}", mininterval=1.0,
                   disable=not group.main)
        while ctx.iteration < cfg.iterations and not ctx.reward.exhausted:
            start = time.perf_counter()
            ctx.seconds.clear()
            row = self._iteration()
            last = ctx.iteration + 1 == cfg.iterations or ctx.reward.exhausted
            if (cfg.eval_every and (ctx.iteration + 1) % cfg.eval_every == 0) or last:
                evaluation, ctx.reward.monitor_calls = group.on_main(
                    lambda: (self._evaluate(), ctx.reward.monitor_calls))
                row.update(evaluation)
            self.method.end_of_iteration(ctx)
            ctx.iteration += 1
            self.wall_seconds += time.perf_counter() - start
            row.update({f"seconds_{p}": ctx.seconds.get(p, 0.0) for p in PHASES})
            row.update(reward_calls=ctx.reward.calls, monitor_reward_calls=ctx.reward.monitor_calls,
                       reward_failures=ctx.reward.failures,
                       wall_seconds=self.wall_seconds, iteration_seconds=time.perf_counter() - start)
            self.metrics.append(row)
            if self.out:
                checkpoint = ctx.iteration % cfg.checkpoint_every == 0 or last
                group.on_main(lambda: self._write_iteration(row, checkpoint))
            bar.update(1)
            bar.set_postfix({k: f"{row[v]:.3g}" for k, v in (
                ("reward", "reward_median"), ("eval", "eval_reward_median"), ("div", "eval_diversity"),
                ("calls", "reward_calls"), ("s/it", "iteration_seconds")) if row.get(v) is not None})
        bar.close()
        if ctx.reward.exhausted:
            self.log(f"stopped: reward budget of {cfg.reward.budget} calls reached after {ctx.iteration} iterations")
        result = FinetuneResult(ctx.student, self.metrics, self.out, ctx.reward.calls)
        if self.out:
            group.on_main(self._finish)
        return result

    def _collect(self, chunk: int):
        """Collect one chunk on a copy of the context holding the chunk's own generator and timers (the
        models, the reward and the iteration are shared), so chunks may run in two threads (`overlap`)."""
        ctx = dataclasses.replace(self.ctx, chunk=chunk, generator=chunk_generator(self.config.seed,
                                  self.ctx.iteration, chunk), seconds=defaultdict(float))
        batch = self.method.collect(ctx, self.config.batch_size)
        for phase, seconds in ctx.seconds.items():
            self.ctx.seconds[phase] += seconds
        return batch

    def _collect_chunks(self, chunks: list[int]) -> dict:
        if not (self.config.overlap and len(chunks) > 1):
            return {j: self._collect(j) for j in chunks}
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="vidd-collect") as pool:
            futures = {j: pool.submit(self._collect, j) for j in chunks}
            return {j: f.result() for j, f in futures.items()}

    def _iteration(self) -> dict:
        """One optimiser step. This process collects chunks rank, rank + world, ... of the `accumulation`
        chunks; the losses are normalised by the global number of examples and the gradients summed over
        the processes, so the step is the single-process one. The logged statistics are computed on every
        chunk's gathered results in chunk order."""
        cfg, ctx, group, reward = self.config, self.ctx, self.group, self.ctx.reward
        calls, failures = reward.calls, reward.failures
        ctx.student.train()
        self.optimizer.zero_grad(set_to_none=True)
        batches = self._collect_chunks(list(range(group.rank, cfg.accumulation, group.world)))
        total = group.sum(sum(b.size for b in batches.values()))
        losses: dict[int, list[float]] = {j: [] for j in batches}
        with ctx.timed("backward"):
            for j, batch in batches.items():
                for i in range(0, batch.size, cfg.loss_chunk):
                    chunk = {k: v[i:i + cfg.loss_chunk].to(self.device) for k, v in batch.examples.items()}
                    loss = self.method.example_loss(ctx, chunk).sum() / total
                    loss.backward()
                    losses[j].append(loss.item())
            group.sum_gradients(list(ctx.student.parameters()))
            grad_norm = float(torch.nn.utils.clip_grad_norm_(ctx.student.parameters(), cfg.grad_clip)) if total else 0.0
            if total:
                self.optimizer.step()
        ctx.student.eval()
        finals = {j: b.finals.cpu() for j, b in batches.items()}
        rewards: dict[int, np.ndarray] = {}
        if cfg.log_rollin_reward:
            r = ctx.rewards(torch.cat(list(finals.values())))
            rewards = dict(zip(finals, np.split(r, np.cumsum([len(f) for f in finals.values()])[:-1])))
        parts = group.gather({
            "chunks": {j: {"stats": batches[j].stats, "losses": losses[j], "finals": finals[j],
                           "rewards": rewards.get(j)} for j in batches},
            "state": self.method.chunk_state(),
            "calls": reward.calls - calls, "failures": reward.failures - failures, "journal": reward.journal or {},
        })
        if group.world > 1:
            merge_reward_accounting(reward, parts, calls, failures)
        self.method.merge_chunk_state({j: v for part in parts for j, v in part["state"].items()})
        chunks = [c for _, c in sorted((j, c) for part in parts for j, c in part["chunks"].items())]
        row: dict = {"iteration": ctx.iteration + 1, "loss": sum((x for c in chunks for x in c["losses"]), 0.0),
                     "grad_norm": grad_norm}
        for key in chunks[0]["stats"]:
            vals = [c["stats"][key] for c in chunks if not math.isnan(c["stats"][key])]
            row[key] = float(np.mean(vals)) if vals else None
        seqs = ctx.student.alphabet.decode(torch.cat([c["finals"] for c in chunks]))
        row["rollin_diversity"] = self.samples.diversity(seqs)
        if cfg.log_rollin_reward:
            r = np.concatenate([c["rewards"] for c in chunks])
            row.update(reward_median=float(np.median(r)), reward_mean=float(r.mean()), reward_std=float(r.std()))
        return row

    # ---------------------------------------------------------- evaluation
    @torch.no_grad()
    def _evaluate(self) -> dict:
        cfg, ctx = self.config, self.ctx
        with ctx.timed("eval"):
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + ctx.iteration)
            traj = ctx.student.sample(cfg.eval_samples, cfg.steps, gen, record=True)
            kl = self._kl_to_pretrained(traj)
            seqs = ctx.student.alphabet.decode(traj.final.cpu())
            loglik = ctx.pretrained.elbo(traj.final, cfg.steps, samples=min(cfg.likelihood_samples, cfg.steps),
                                         generator=gen).numpy()
            train_r = ctx.reward.monitor(seqs)  # counted apart from the training budget
            row = {"eval_train_reward_median": float(np.median(train_r)), "eval_diversity": self.samples.diversity(seqs),
                   "eval_uniqueness": len(set(seqs)) / len(seqs), "eval_loglik_median": float(np.median(loglik)),
                   "eval_kl_to_pretrained": kl}
            if self.eval_reward is not None:
                row["eval_reward_median"] = finite_median(self.eval_reward(seqs))
            if self.out:
                self._write_samples(f"iter_{ctx.iteration + 1:05d}", seqs)
        return row

    def _write_samples(self, stem: str, seqs: list[str]) -> None:
        self.samples.write_samples(self.out / "samples" / f"{stem}{self.samples.sample_suffix}", seqs)

    def _kl_to_pretrained(self, traj) -> float:
        """Monte Carlo KL(p_theta || p_pre) of the whole chain: the sum over steps of the log-ratio of
        transitions (the reveal/stay constants are shared by both models and cancel)."""
        ctx, total = self.ctx, torch.zeros(traj.states.shape[1], dtype=torch.float64)
        for k in range(traj.steps):
            x, nxt, t = traj.states[k], traj.states[k + 1], traj.times[k].float()
            total += (ctx.student.revealed_log_prob(x, nxt, ctx.student.denoise(x, t))
                      - ctx.pretrained.revealed_log_prob(x, nxt, ctx.pretrained.denoise(x, t))).double().cpu()
        return float(total.mean())

    def _finish(self) -> None:
        from vidd.eval.report import write_report

        self.ctx.student.save(self.out / "checkpoints" / "student.pt")
        self._final_eval()
        write_report(self.out)

    def _final_eval(self) -> None:
        gen = torch.Generator().manual_seed(self.config.seed + 7)
        n = self.config.final_samples
        seqs = self.ctx.student.alphabet.decode(self.ctx.student.sample(n, self.config.steps, gen).cpu())
        self._write_samples("final", seqs)
        report = dict(self.final_evaluator(seqs)) if self.final_evaluator else {}
        if not report and self.eval_reward is not None:
            report["eval_reward_median"] = finite_median(self.eval_reward(seqs))
        report.update(n=len(seqs), reward_calls=self.ctx.reward.calls,
                      monitor_reward_calls=self.ctx.reward.monitor_calls, wall_seconds=self.wall_seconds,
                      iterations=self.ctx.iteration)
        with atomic_open(self.out / "final_eval.json") as f:
            json.dump(report, f, indent=2)

    # ----------------------------------------------------- run folder / resume
    def _prepare_folder(self, resume: bool) -> None:
        """Main process: check the folder (resume) or create it (new run)."""
        out, ckpt = self.out, self.out / "checkpoints" / "last.pt"
        if resume:
            if not ckpt.is_file():
                raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
            return
        if (out / "metrics.jsonl").exists() or ckpt.exists():
            raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "samples").mkdir(exist_ok=True)
        with atomic_open(out / "config.yaml") as f:
            yaml.safe_dump(to_dict(self.config), f, sort_keys=False)

    def _resume(self) -> None:
        """Every process: continue from the checkpoint; the main process drops metric rows past it."""
        self._load_checkpoint(self.out / "checkpoints" / "last.pt")
        rows = [json.loads(line) for line in (self.out / "metrics.jsonl").read_text().splitlines() if line.strip()]
        self.metrics = [r for r in rows if r["iteration"] <= self.ctx.iteration]
        self.group.on_main(self._rewrite_metrics)
        self.log(f"resumed {self.out} at iteration {self.ctx.iteration}")

    def _write_iteration(self, row: dict, checkpoint: bool) -> None:
        self._append_metrics(row)
        if checkpoint:
            self._save_checkpoint()

    def _append_metrics(self, row: dict) -> None:
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        self._write_csv()

    def _rewrite_metrics(self) -> None:
        with atomic_open(self.out / "metrics.jsonl") as f:
            f.writelines(json.dumps(r) + "\n" for r in self.metrics)
        self._write_csv()

    def _write_csv(self) -> None:
        keys = list(dict.fromkeys(k for r in self.metrics for k in r))
        with atomic_open(self.out / "metrics.csv") as f:
            writer = csv.DictWriter(f, keys)
            writer.writeheader()
            writer.writerows(self.metrics)

    def _save_checkpoint(self) -> None:
        ctx = self.ctx
        atomic_torch_save({
            "model": {**ctx.student.spec(), "state_dict": ctx.student.state_dict()},
            "rollout": ctx.rollout.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "iteration": ctx.iteration,
            "reward": ctx.reward.state_dict(),
            "method": self.method.state_dict(),
            "wall_seconds": self.wall_seconds,
        }, self.out / "checkpoints" / "last.pt")

    def _load_checkpoint(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        ctx = self.ctx
        ctx.student.load_state_dict(state["model"]["state_dict"])
        ctx.rollout.load_state_dict(state["rollout"])
        self.optimizer.load_state_dict(state["optimizer"])
        ctx.iteration = state["iteration"]
        ctx.reward.load_state_dict(state["reward"])
        self.method.load_state_dict(state["method"])
        self.wall_seconds = state["wall_seconds"]


def finetune(model: MaskedDiffusion, reward, config: FinetuneConfig | None = None, *,
             eval_reward=None, out: str | Path | None = None, resume: bool = False, log=print) -> FinetuneResult:
    """Fine-tune any masked diffusion model against any reward (a Reward or a plain callable
    `list[str] -> floats`). Returns the fine-tuned student and the per-iteration metrics. Under torchrun
    (WORLD_SIZE > 1) the run is data-parallel (docs/scaling.md) and every process returns the same result."""
    return Trainer(config or FinetuneConfig(), model, reward, eval_reward, out, log=log).run(resume)
