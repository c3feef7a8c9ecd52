"""The fine-tuning loop: collect, distil, update, evaluate, log, checkpoint, resume."""

from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from vidd.core.config import to_dict
from vidd.core.runfolder import RunFolder
from vidd.core.version import __version__
from vidd.diffusion.masked import MaskedDiffusion
from vidd.eval.metrics import finite_median
from vidd.eval.samples import SampleFormat
from vidd.rewards.base import Reward, as_reward
from vidd.rewards.counted import BudgetExhausted, CountedReward
from vidd.training.callbacks import Callback
from vidd.training.config import FinetuneConfig
from vidd.training.context import Context
from vidd.training.copies import ModelCopies
from vidd.training.distributed import ProcessGroup, merge_reward_accounting, world_size
from vidd.training.objectives import Method

PHASES = ("rollin", "rollout", "value", "reward", "backward", "eval")


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


@dataclass
class FinalEvaluation:
    """The fine-tuned student's final samples, their per-sequence table (`Task.per_sequence`, may be empty) and
    the final evaluation report (final_eval.json)."""
    samples: list[str]
    table: dict[str, list]
    report: dict


class Trainer:
    """Single-process, or data-parallel under torchrun (docs/scaling.md): every process runs the same loop on
    its share of the accumulation chunks; the main process alone evaluates and calls the callbacks
    (vidd.training.callbacks), which write the run folder, the progress bar and anything else."""

    def __init__(self, config: FinetuneConfig, pretrained: MaskedDiffusion, reward,
                 eval_reward: Reward | None = None,
                 final_evaluator: Callable[[list[str]], dict] | None = None, log=print,
                 samples: SampleFormat | None = None, callbacks: list[Callback] = (),
                 final_table: Callable[[list[str], CountedReward], dict] | None = None, task: str = ""):
        self.config = config
        self.task = task  # recorded in the fine-tuned model's provenance
        config.check_world(world_size())
        self.group = ProcessGroup.join(config.distributed_backend, config.device)
        self.device = self.group.device
        self.samples = samples or SampleFormat()
        self.log = log if self.group.main else (lambda *args, **kwargs: None)
        self.final_evaluator = final_evaluator
        self.final_table = final_table  # one row per final sample (Task.per_sequence), samples/final.tsv
        self.callbacks = list(callbacks) if self.group.main else []
        if config.threads:
            torch.set_num_threads(config.threads)
        pretrained = pretrained.to(self.device).eval()
        self.group.broadcast_module(pretrained)  # every process starts from the main process's weights
        for p in pretrained.parameters():
            p.requires_grad_(False)
        self.base_model = {"sha256": pretrained.weights_sha256(), "metadata": pretrained.metadata}
        self.copies = ModelCopies(pretrained, config.model, config.seed)  # reduced precision: a cast copy of it
        self.ctx = Context(self.copies.student, self.copies.rollout, self.copies.pretrained,
                           CountedReward(reward, config.reward),
                           torch.Generator().manual_seed(config.seed), config.steps,
                           total_iterations=config.iterations)
        if self.group.world > 1:
            self.ctx.reward.journal = {}  # merged across processes after every iteration
        self.method = Method.lookup(config.method.name)(config.method)
        self.eval_reward = as_reward(eval_reward) if eval_reward is not None else None
        self.optimizer = torch.optim.Adam(self.copies.trainable_parameters(), lr=config.lr,
                                          weight_decay=config.weight_decay)
        self.metrics: list[dict] = []
        self.wall_seconds = 0.0

    # ----------------------------------------------------------- the loop
    def run(self, resume_from: RunFolder | None = None) -> FinetuneResult:
        """Train (from the latest checkpoint of the run folder `resume_from`, if given)."""
        try:
            return self._run(resume_from)
        finally:
            self.group.close()

    def _run(self, resume_from: RunFolder | None) -> FinetuneResult:
        cfg, ctx, group = self.config, self.ctx, self.group
        if resume_from is not None:
            self._resume(resume_from)
        self.log("derived: " + ", ".join(f"{k} = {v}" for k, v in cfg.derived(group.world).items()))
        self._notify("on_run_start")
        trajectories = self._trajectories()
        budget_stop = trajectories == 0
        while ctx.iteration < cfg.iterations and trajectories:
            start = time.perf_counter()
            ctx.seconds.clear()
            calls_before = ctx.reward.calls
            try:
                row = self._iteration(trajectories)
            except BudgetExhausted:  # a method made more calls than its `reward_calls` bound: drop the iteration
                self.optimizer.zero_grad(set_to_none=True)
                ctx.student.eval()
                budget_stop = True
                break
            trajectories = self._trajectories()
            idle = self._idle_iterations(ctx.reward.calls == calls_before)
            last = ctx.iteration + 1 == cfg.iterations or trajectories == 0 or idle
            budget_stop = trajectories == 0
            crossed = any(calls_before < c <= ctx.reward.calls for c in cfg.eval_at_calls)
            if (cfg.eval_every and (ctx.iteration + 1) % cfg.eval_every == 0) or crossed or last:
                evaluation, ctx.reward.monitor_calls = group.on_main(
                    lambda: (self._evaluate(), ctx.reward.monitor_calls))
                samples = evaluation.pop("samples")
                row.update(evaluation)
                self._notify("on_evaluation", {"iteration": ctx.iteration + 1, **evaluation}, samples)
            self.method.end_of_iteration(ctx)
            ctx.iteration += 1
            elapsed = time.perf_counter() - start
            self.wall_seconds += elapsed
            previous = self.metrics[-1] if self.metrics else {}
            row.update({f"seconds_{p}": ctx.seconds.get(p, 0.0) for p in PHASES})
            row.update(reward_calls=ctx.reward.calls, monitor_reward_calls=ctx.reward.monitor_calls,
                       reward_failures=ctx.reward.failures,
                       wall_seconds=self.wall_seconds, iteration_seconds=time.perf_counter() - start,
                       train_seconds=previous.get("train_seconds", 0.0) + elapsed - ctx.seconds.get("eval", 0.0),
                       updates=previous.get("updates", ctx.iteration - 1) + row.pop("optimiser_steps"))
            self.metrics.append(row)
            self._notify("on_iteration_end", row)
            group.on_main(ctx.reward.check_failures)  # every process stops when the main one does
            if idle:
                self.log(f"stopped: {cfg.stop_after_idle} iterations in a row made no new reward call")
                break
        if budget_stop:
            self.log(f"stopped: {ctx.reward.calls} of the reward budget of {cfg.reward.budget} calls made after "
                     f"{ctx.iteration} iterations (another would exceed it)")
        model = self.copies.final_model()
        model.metadata = self.provenance()
        result = FinetuneResult(model, self.metrics, reward_calls=ctx.reward.calls)
        self._notify("on_run_end", result)
        return result

    def notify(self, hook: str, *args) -> None:
        """Call `hook` of every callback (a callback may announce an event to the others, e.g. a checkpoint). One
        that raises does not keep the event from the others (a failed report still lets the trackers finish);
        the first exception is raised once all have been called."""
        errors = []
        for callback in self.callbacks:
            try:
                getattr(callback, hook)(self, *args)
            except Exception as error:  # noqa: BLE001 - raised below, after the other callbacks
                errors.append(error)
        for later in errors[1:]:
            self.log(f"warning: another callback also failed in {hook}: {type(later).__name__}: {later}")
        if errors:
            raise errors[0]

    def _notify(self, hook: str, *args) -> None:
        self.group.on_main(lambda: self.notify(hook, *args))

    def _idle_iterations(self, idle_now: bool) -> bool:
        """Whether this iteration (idle_now: it made no new reward call) is the `stop_after_idle`-th idle one in a
        row, judged from the logged rows (so a resumed run counts alike): the last n rows hold the same calls."""
        n, calls = self.config.stop_after_idle, self.ctx.reward.calls
        rows = self.metrics[-n:] if n else []
        return idle_now and n > 0 and len(rows) == n and all(r["reward_calls"] == calls for r in rows)

    def _trajectories(self) -> int:
        """Roll-in trajectories per accumulation chunk for the next iteration: `batch_size`, or fewer when the
        method's most reward calls (`reward_calls`) for that many would exceed what is left of the budget (the
        last collection is trimmed); 0 when not even one trajectory per chunk fits."""
        cfg, left = self.config, self.ctx.reward.remaining
        method = cfg.method
        for n in range(cfg.batch_size, 0, -1):
            trajectories = n * cfg.accumulation
            if left is None or method.reward_calls(trajectories, method.training_states(trajectories, cfg.steps)) <= left:
                return n
        return 0

    def _collect(self, chunk: int, n: int):
        """Collect one chunk of n trajectories on a copy of the context holding the chunk's own generator and
        timers (the models, the reward and the iteration are shared), so chunks may run in two threads
        (`overlap`)."""
        ctx = dataclasses.replace(self.ctx, chunk=chunk, generator=chunk_generator(self.config.seed,
                                  self.ctx.iteration, chunk), seconds=defaultdict(float))
        batch = self.method.collect(ctx, n)
        for phase, seconds in ctx.seconds.items():
            self.ctx.seconds[phase] += seconds
        return batch

    def _collect_chunks(self, chunks: list[int], n: int) -> dict:
        if not (self.config.overlap and len(chunks) > 1):
            return {j: self._collect(j, n) for j in chunks}
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="vidd-collect") as pool:
            futures = {j: pool.submit(self._collect, j, n) for j in chunks}
            return {j: f.result() for j, f in futures.items()}

    def _optimiser_step(self, batches: dict, total: int) -> tuple[dict[int, list[float]], float]:
        """Back-propagate the loss of every collected example and take one optimiser step: the loss per
        chunk (one number per loss chunk) and the gradient norm before clipping."""
        cfg, ctx, group = self.config, self.ctx, self.group
        losses: dict[int, list[float]] = {j: [] for j in batches}
        with ctx.timed("backward"):
            for j, batch in batches.items():
                for i in range(0, batch.size, cfg.loss_chunk):
                    chunk = {k: v[i:i + cfg.loss_chunk].to(self.device) for k, v in batch.examples.items()}
                    loss = self.method.example_loss(ctx, chunk).sum() / total
                    self.copies.backward(loss)
                    losses[j].append(loss.item())
            group.sum_gradients(self.copies.trainable_parameters())
            grad_norm = self.copies.clip_and_step(self.optimizer, cfg.grad_clip) if total else 0.0
        return losses, grad_norm

    def _iteration(self, n: int) -> dict:
        """Collect n trajectories per chunk, then take the method's `inner_steps` optimiser steps on them. This
        process collects chunks rank, rank + world, ... of the `accumulation` chunks; the losses are normalised
        by the global number of examples and the gradients summed over the processes, so a step is the
        single-process one. The logged statistics are computed on every chunk's gathered results in chunk
        order; `loss` and `grad_norm` are those of the first step."""
        cfg, ctx, group, reward = self.config, self.ctx, self.group, self.ctx.reward
        calls, failures, monitor = reward.calls, reward.failures, reward.monitor_calls
        ctx.student.train()
        self.optimizer.zero_grad(set_to_none=True)
        batches = self._collect_chunks(list(range(group.rank, cfg.accumulation, group.world)), n)
        total = group.sum(sum(b.size for b in batches.values()))
        steps = self.method.inner_steps
        trained = self.copies.trainable_parameters()
        start = [p.detach().clone() for p in trained] if steps > 1 else None
        losses, grad_norm = self._optimiser_step(batches, total)
        last_losses = losses
        for _ in range(steps - 1):
            self.optimizer.zero_grad(set_to_none=True)
            last_losses, _ = self._optimiser_step(batches, total)
        ctx.student.eval()
        finals = {j: b.finals.cpu() for j, b in batches.items()}
        rewards: dict[int, np.ndarray] = {}
        if cfg.log_rollin_reward:  # free where training calls scored these samples, else monitor calls
            r = reward.monitor(ctx.student.alphabet.decode(torch.cat(list(finals.values()))))
            rewards = dict(zip(finals, np.split(r, np.cumsum([len(f) for f in finals.values()])[:-1])))
        parts = group.gather({
            "chunks": {j: {"stats": batches[j].stats, "losses": losses[j], "last_losses": last_losses[j],
                           "finals": finals[j], "rewards": rewards.get(j)} for j in batches},
            "state": self.method.chunk_state(),
            "calls": reward.calls - calls, "failures": reward.failures - failures, "journal": reward.journal or {},
            "monitor": reward.monitor_calls - monitor,
        })
        if group.world > 1:
            merge_reward_accounting(reward, parts, calls, failures)
            reward.monitor_calls = monitor + sum(p["monitor"] for p in parts)
        self.method.merge_chunk_state({j: v for part in parts for j, v in part["state"].items()})
        chunks = [c for _, c in sorted((j, c) for part in parts for j, c in part["chunks"].items())]
        row: dict = {"iteration": ctx.iteration + 1, "loss": sum((x for c in chunks for x in c["losses"]), 0.0),
                     "grad_norm": grad_norm, "optimiser_steps": steps if total else 0}
        if steps > 1:  # how far the steps on this one batch moved the student
            row["loss_last_step"] = sum((x for c in chunks for x in c["last_losses"]), 0.0)
            moved = sum(float((p.detach() - p0).pow(2).sum()) for p, p0 in zip(trained, start))
            row["student_shift"] = (moved / max(sum(float(p0.pow(2).sum()) for p0 in start), 1e-30)) ** 0.5
        for key in chunks[0]["stats"]:
            vals = [c["stats"][key] for c in chunks if not math.isnan(c["stats"][key])]
            row[key] = float(np.mean(vals)) if vals else None
        seqs = ctx.student.alphabet.decode(torch.cat([c["finals"] for c in chunks]))
        row["rollin_diversity"] = self.samples.diversity(seqs) if len(seqs) > 1 else None  # a trimmed last batch
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
            row.update({f"eval_{k}": v for k, v in self.samples.sample_metrics(seqs).items()})
            if self.eval_reward is not None:
                row["eval_reward_median"] = finite_median(self.eval_reward(seqs))
        return {**row, "samples": seqs}

    def _kl_to_pretrained(self, traj) -> float:
        """Monte Carlo KL(p_theta || p_pre) of the whole chain: the sum over steps of the log-ratio of
        transitions (the reveal/stay constants are shared by both models and cancel). The student's side is
        the sampler's own (`traj.step_log_probs`)."""
        ctx, total = self.ctx, torch.zeros(traj.states.shape[1], dtype=torch.float64)
        for k in range(traj.steps):
            x, nxt, t = traj.states[k], traj.states[k + 1], traj.times[k].float()
            total += (traj.step_log_probs[k]
                      - ctx.pretrained.revealed_log_prob(x, nxt, ctx.pretrained.denoise(x, t))).double().cpu()
        return float(total.mean())

    def final_evaluation(self) -> FinalEvaluation:
        """`final_samples` samples of the student, their per-sequence table and the final evaluation report
        (the task's evaluator, else the evaluation reward's median), with the run's reward accounting."""
        gen = torch.Generator().manual_seed(self.config.seed + 7)
        n = self.config.final_samples
        seqs = self.ctx.student.alphabet.decode(self.ctx.student.sample(n, self.config.steps, gen).cpu())
        reward, monitor_calls = self.ctx.reward, self.ctx.reward.monitor_calls
        table = self.final_table(seqs, reward) if self.final_table else {}
        report = dict(self.final_evaluator(seqs)) if self.final_evaluator else {}
        if not report and self.eval_reward is not None:
            report["eval_reward_median"] = finite_median(self.eval_reward(seqs))
        report.update(n=len(seqs), reward_calls=reward.calls, monitor_reward_calls=monitor_calls,
                      wall_seconds=self.wall_seconds, iterations=self.ctx.iteration)
        if table:
            report["final_table_reward_calls"] = reward.monitor_calls - monitor_calls
        return FinalEvaluation(seqs, table, report)

    # ----------------------------------------------------- run folder / resume
    def provenance(self) -> dict:
        """What the student is (its metadata in checkpoints and in the fine-tuned model): the base model (the
        sha256 of its weights and its own metadata), task, method, full config, iteration, reward calls and
        vidd version."""
        return {"base_model": self.base_model, "task": self.task, "method": self.config.method.name,
                "config": to_dict(self.config), "iteration": self.ctx.iteration,
                "reward_calls": self.ctx.reward.calls, "vidd_version": __version__}

    def _resume(self, folder: RunFolder) -> None:
        """Every process: continue from the checkpoint, with the metric rows up to it (the run folder's writer
        drops the later ones from the folder)."""
        self.load_state_dict(folder.load_checkpoint(self.device))
        self.metrics = [r for r in folder.read_metrics() if r["iteration"] <= self.ctx.iteration]
        self.log(f"resumed {folder.path} at iteration {self.ctx.iteration}")

    def state_dict(self) -> dict:
        """What a checkpoint holds: the student (with its provenance), the roll-out model, the optimiser, the
        iteration, the reward's accounting and cache, the method's state and the time spent."""
        ctx = self.ctx
        return {
            **self.copies.state_dict(metadata=self.provenance()),
            "optimizer": self.optimizer.state_dict(),
            "iteration": ctx.iteration,
            "reward": ctx.reward.state_dict(),
            "method": self.method.state_dict(),
            "wall_seconds": self.wall_seconds,
        }

    def load_state_dict(self, state: dict) -> None:
        ctx = self.ctx
        self.copies.load_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])
        ctx.iteration = state["iteration"]
        ctx.reward.load_state_dict(state["reward"])
        self.method.load_state_dict(state["method"])
        self.wall_seconds = state["wall_seconds"]
