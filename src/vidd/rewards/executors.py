"""Run an expensive reward in batches on an executor: in-process (`serial`), a process pool, or Ray actors.

`ParallelReward(factory, ExecutorConfig(...))` is a `Reward` like any other (wrap it in `CountedReward`
for the cache, budget and failure policy). It splits each call's sequences into batches, runs them on
an executor, retries a batch that raised or timed out, and returns the values in the input order.
`parallel_reward(factory, config)` also accepts kind `inline` (the default of the config: no executor,
the reward built from the factory is called directly in this process).

The reward is given as a picklable zero-argument *factory* (a module-level class or function, or a
`functools.partial` of one): each worker builds its own reward from it once and keeps it (receptor
maps, a loaded model...) for every later batch: a process-pool worker in a module-level cache, a Ray
actor in its own attributes.

The scheduling (batches in flight, deadlines, retries, errors) lives once in `ParallelReward`, on top of
`concurrent.futures`; a backend (`BatchExecutor`) only submits a batch, returning a `Future`, and
abandons timed-out work. The Ray backend submits to an idle actor (`ObjectRef.future()` gives the
Future) and abandons by killing the actor, which is replaced on the next submit.
"""

from __future__ import annotations

import hashlib
import logging
import math
import multiprocessing
import os
import pickle
import time
from abc import ABC, abstractmethod
from collections import deque
from contextlib import contextmanager
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Literal

import numpy as np

from vidd.core.config import ConfigError, option
from vidd.rewards.base import Reward, as_reward

log = logging.getLogger(__name__)


@dataclass
class ExecutorConfig:
    kind: Literal["inline", "serial", "process", "ray"] = option(
        "inline", "where the reward runs: `inline` (no executor: called directly in this process), `serial` "
                  "(in this process, with the batching / retry / timeout logic; for tests and debugging), "
                  "`process` (a pool of worker processes) or `ray` (Ray actors, extra [dist])")
    workers: int = option(
        0, "worker processes or Ray actors, i.e. batches in flight (0: os.cpu_count() for `process`; the "
           "cluster's CPUs / cpus_per_worker for `ray`)")
    batch_size: int = option(1, "sequences per task sent to a worker")
    retries: int = option(1, "extra attempts for a batch that raised, timed out or lost its worker, before "
                             "the call fails")
    timeout: float = option(
        0.0, "seconds a batch may run before it is abandoned and retried (0: no limit); a new worker's "
             "first batch gets `start_timeout` more")
    start_timeout: float = option(
        0.0, "with `timeout`: extra seconds for the first batch of each new worker (after the first call, a "
             "crash or a timeout), which also starts the worker (a process, or a Ray actor) and builds its "
             "reward, e.g. loads a model or a receptor's maps")
    start_method: Literal["spawn", "forkserver", "fork"] = option(
        "spawn", "`process`: how worker processes start; `fork` starts faster but is unsafe once the parent "
                 "uses CUDA or threads")
    address: str = option(
        "auto", "`ray`: the cluster. `auto`: the one in RAY_ADDRESS, else the latest cluster started on this "
                "machine, else start a local one; `local`: always start a local one; `ray://HOST:PORT`: Ray "
                "Client; any other string: a cluster address (HOST:PORT of the head node). A Ray session "
                "already open in this process is used as it is")
    cpus_per_worker: float = option(1.0, "`ray`: CPUs each actor reserves")
    gpus_per_worker: float = option(0.0, "`ray`: GPUs each actor reserves (fractions share a GPU)")
    on_batch_failure: Literal["raise", "nan"] = option(
        "raise", "a batch that still fails after its retries: `raise` fails the whole call (CountedReward "
                 "then applies reward.on_failure to every sequence of the call), `nan` logs the cause and "
                 "returns NaN for that batch only (CountedReward's penalty then replaces just those values)")

    def __post_init__(self):
        for name, low in (("workers", 0), ("batch_size", 1), ("retries", 0), ("timeout", 0),
                          ("start_timeout", 0), ("gpus_per_worker", 0)):
            value = getattr(self, name)
            if value < low:
                raise ConfigError(f"executor.{name}: must be >= {low}, got {value!r}")
        if self.cpus_per_worker <= 0:
            raise ConfigError(f"executor.cpus_per_worker: must be > 0, got {self.cpus_per_worker!r}")
        if not self.address.strip():
            raise ConfigError("executor.address: must not be empty (`auto`, `local`, `ray://HOST:PORT` or HOST:PORT)")

    @property
    def n_workers(self) -> int:
        """Process-pool workers (`workers`, else the machine's CPU count)."""
        return self.workers or os.cpu_count() or 1


class BatchTimeout(TimeoutError):
    """A batch ran past `ExecutorConfig.timeout`."""


class RewardExecutorError(RuntimeError):
    """A batch still failed after its retries; `__cause__` is the last failure (with the worker's traceback)."""


# --------------------------------------------------------------------------------------------------
# Worker side: module-level state, one reward per factory per process.

_WORKER_FACTORIES: dict[str, bytes] = {}  # factory key -> pickled factory (installed by the pool initializer)
_WORKER_REWARDS: dict[str, Reward] = {}  # factory key -> the reward this process built from it


def _install_factory(key: str, blob: bytes) -> None:
    _WORKER_FACTORIES[key] = blob


def _worker_reward(key: str) -> Reward:
    reward = _WORKER_REWARDS.get(key)
    if reward is None:
        reward = as_reward(pickle.loads(_WORKER_FACTORIES[key])())
        _WORKER_REWARDS[key] = reward
    return reward


def _score_batch(key: str, seqs: list[str]) -> np.ndarray:
    return _worker_reward(key)(seqs)


# --------------------------------------------------------------------------------------------------
# Backends: submit a batch -> Future; abandon timed-out work.

class BatchExecutor(ABC):
    """Where batches run. `ParallelReward` owns the scheduling; a backend only runs batches."""

    capacity: int = 1  # batches in flight at once

    @abstractmethod
    def submit(self, seqs: list[str], timeout: float) -> tuple[Future, bool]:
        """Start scoring one batch; the Future resolves to an array of len(seqs) values. The flag: the batch
        goes to a new worker, which starts and builds its reward first (`ExecutorConfig.start_timeout`)."""

    @abstractmethod
    def abandon(self, futures: list[Future]) -> list[Future]:
        """Stop the work behind `futures` (timed out, or the call is being given up). Returns the other
        in-flight futures that were lost with them (to be resubmitted, not counted as attempts)."""

    def close(self) -> None:
        pass


class SerialExecutor(BatchExecutor):
    """Runs each batch in this process when submitted. A batch cannot be interrupted here, so the timeout
    is applied after the fact: a batch that took longer than `timeout` counts as timed out (its values
    are dropped), as it would have been on a process pool."""

    capacity = 1

    def __init__(self, factory: Callable[[], Reward], reward: Reward | None = None):
        self.factory = factory
        self.reward = reward

    def submit(self, seqs, timeout):
        future: Future = Future()
        new_worker = self.reward is None
        try:
            if new_worker:
                self.reward = as_reward(self.factory())
            start = time.monotonic()  # building the reward is not timed: it cannot be interrupted either
            values = self.reward(seqs)
        except Exception as e:  # noqa: BLE001 - user code: the failure goes to the retry logic
            future.set_exception(e)
            return future, new_worker
        elapsed = time.monotonic() - start
        if timeout > 0 and elapsed > timeout:
            future.set_exception(BatchTimeout(f"batch of {len(seqs)} took {elapsed:.3g} s (timeout {timeout:g} s)"))
        else:
            future.set_result(values)
        return future, new_worker

    def abandon(self, futures):
        return []

    def close(self):
        self.reward = None


class ProcessExecutor(BatchExecutor):
    """A `concurrent.futures.ProcessPoolExecutor`, created on first use and kept across calls (so workers
    keep their reward). A running task cannot be cancelled, so abandoning one kills the pool's workers;
    the pool is recreated on the next submit. The first `capacity` batches of a pool count as new workers'
    first batches (at most `capacity` are in flight, so each of them waits for a worker to start)."""

    def __init__(self, key: str, blob: bytes, workers: int, start_method: str):
        self.key, self.blob = key, blob
        self.capacity = workers
        self.start_method = start_method
        self.pool: ProcessPoolExecutor | None = None
        self.unstarted = 0  # workers of the pool that have not been given a batch yet
        self.in_flight: set[Future] = set()

    def _start_pool(self) -> None:
        self.pool = ProcessPoolExecutor(self.capacity, mp_context=multiprocessing.get_context(self.start_method),
                                        initializer=_install_factory, initargs=(self.key, self.blob))
        self.unstarted = self.capacity

    def submit(self, seqs, timeout):
        if self.pool is None:
            self._start_pool()
        try:
            future = self.pool.submit(_score_batch, self.key, seqs)
        except BrokenProcessPool:  # a worker died (killed, segfault, out of memory): start afresh
            self._kill()
            self._start_pool()
            future = self.pool.submit(_score_batch, self.key, seqs)
        self.in_flight.add(future)
        future.add_done_callback(self.in_flight.discard)
        new_worker = self.unstarted > 0
        self.unstarted -= new_worker
        return future, new_worker

    def abandon(self, futures):
        given = set(futures)
        lost = [f for f in list(self.in_flight) if f not in given and not f.done()]
        self._kill()
        return lost

    def _kill(self) -> None:
        pool, self.pool = self.pool, None
        self.in_flight = set()
        if pool is None:
            return
        if hasattr(pool, "terminate_workers"):  # Python >= 3.14
            pool.terminate_workers()
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())  # no public API before 3.14
        for p in processes:
            if p.is_alive():
                p.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()

    def close(self):
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------------------------------
# Ray: long-lived actors, one batch at a time each.

_RAY_SESSION = {"owned": False, "users": 0}  # a Ray session started here is shut down by its last user


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise ConfigError("executor.kind 'ray' needs Ray: pip install 'vidd[dist]'") from e
    return ray


def _ray_acquire(ray, address: str) -> None:
    """Use the Ray session of this process, opening one as `address` says (see ExecutorConfig.address)."""
    if ray.is_initialized():
        if address != "auto" and not _RAY_SESSION["owned"]:
            log.warning("Ray is already initialised in this process; executor.address %r is not used", address)
    else:
        try:
            ray.init(address=None if address == "auto" else address)  # None: RAY_ADDRESS, latest, else new
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise ConfigError(f"executor.address {address!r}: cannot connect to Ray: {e}") from e
        _RAY_SESSION["owned"] = True
    _RAY_SESSION["users"] += 1


def _ray_release(ray) -> None:
    _RAY_SESSION["users"] -= 1
    if _RAY_SESSION["users"] <= 0 and _RAY_SESSION["owned"]:
        ray.shutdown()
        _RAY_SESSION.update(owned=False, users=0)


class _RewardActor:
    """A Ray actor's body: builds the reward from the pickled factory on its first batch and keeps it."""

    def __init__(self, blob: bytes):
        self.blob = blob
        self.reward: Reward | None = None

    def score(self, seqs: list[str]) -> np.ndarray:
        if self.reward is None:
            self.reward = as_reward(pickle.loads(self.blob)())
        return self.reward(seqs)


class RayExecutor(BatchExecutor):
    """`capacity` long-lived Ray actors, each reserving `cpus_per_worker` / `gpus_per_worker`. Actors start
    on first use and keep their reward (per-worker state) across batches and calls. A batch goes to an idle
    actor. Abandoning a batch kills its actor (`ray.kill`); an actor whose process died (crash, out of
    memory, killed) fails its batch with a `RayActorError`; either way the next submit to that slot starts a
    fresh actor. The factory is pickled with cloudpickle, so it may also be a lambda or a class defined in
    the driver script; its module, vidd and the reward's dependencies must be importable on every node."""

    def __init__(self, factory: Callable[[], Reward], config: ExecutorConfig, name: str):
        self.ray = ray = _import_ray()
        try:
            self.blob = ray.cloudpickle.dumps(factory)
        except Exception as e:
            raise TypeError(f"reward {name!r}: the factory {factory!r} cannot be pickled for Ray ({e})") from e
        self.config = config
        self.actor_class = ray.remote(_RewardActor)
        self.connected = False
        self._connect()
        fit = self._cluster_fit()
        if config.workers > fit:
            log.warning("Ray reward executor: %d actors asked for, but the cluster has room for %d now; the "
                        "others wait for resources (or an autoscaler's nodes)", config.workers, fit)
        self.capacity = config.workers or fit
        self.actors: list = [None] * self.capacity
        self.pending: list[list[Future]] = [[] for _ in range(self.capacity)]

    def _connect(self) -> None:
        _ray_acquire(self.ray, self.config.address)
        self.connected = True
        self.blob_ref = self.ray.put(self.blob)  # shipped to the object store once for every actor

    def _cluster_fit(self) -> int:
        """How many actors the cluster's CPUs (and GPUs, if asked for) hold now, at least 1."""
        resources = self.ray.cluster_resources()
        fits = [resources.get("CPU", 0.0) / self.config.cpus_per_worker]
        if self.config.gpus_per_worker > 0:
            fits.append(resources.get("GPU", 0.0) / self.config.gpus_per_worker)
        n = max(1, int(min(fits) + 1e-9))
        log.info("Ray reward executor: room for %d actor(s) (cluster resources %s)", n, resources)
        return n

    def _new_actor(self):
        cfg = self.config
        options = {"num_cpus": cfg.cpus_per_worker, "num_gpus": cfg.gpus_per_worker, "max_restarts": 0}
        return self.actor_class.options(**options).remote(self.blob_ref)

    def _lost_worker(self, future: Future) -> bool:
        """The batch failed because its actor is gone (not because the reward raised)."""
        error = future.exception() if future.done() and not future.cancelled() else None
        exceptions = self.ray.exceptions
        return isinstance(error, exceptions.RayError) and not isinstance(error, exceptions.RayTaskError)

    def _slot(self) -> int:
        """An idle actor's slot (else the least busy one's), after replacing a dead actor there."""
        for futures in self.pending:  # keep what runs, and what tells of a dead actor
            futures[:] = [f for f in futures if not f.done() or self._lost_worker(f)]
        slot = min(range(self.capacity), key=lambda i: sum(not f.done() for f in self.pending[i]))
        if any(f.done() for f in self.pending[slot]):
            self._kill(slot)
        return slot

    def submit(self, seqs, timeout):
        if not self.connected:  # closed, then called again
            self._connect()
        slot = self._slot()
        new_worker = self.actors[slot] is None
        if new_worker:
            self.actors[slot] = self._new_actor()
        future = self.actors[slot].score.remote(seqs).future()
        self.pending[slot].append(future)
        return future, new_worker

    def abandon(self, futures):
        given = set(futures)
        lost = []
        for slot, mine in enumerate(self.pending):
            if given.intersection(mine):
                lost += [f for f in mine if f not in given and not f.done()]  # queued on the same actor
                self._kill(slot)
        return lost

    def _kill(self, slot: int) -> None:
        actor, self.actors[slot] = self.actors[slot], None
        self.pending[slot] = []
        if actor is not None:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception as e:  # noqa: BLE001 - already gone
                log.debug("ray.kill: %r", e)

    def close(self):
        if not self.connected:
            return
        for slot in range(self.capacity):
            self._kill(slot)
        self.connected = False
        self.blob_ref = None
        _ray_release(self.ray)


# --------------------------------------------------------------------------------------------------

class ParallelReward(Reward):
    """A reward scored in batches on an executor, built in each worker from a picklable `factory`.

    `name`, `higher_is_better` and `cost_hint` are read from one reward built in this process from the
    factory, unless `name` and `higher_is_better` are both given (then the factory is never called here,
    e.g. to keep a large model out of the training process). `differentiable` is always False.
    """

    differentiable = False

    def __init__(self, factory: Callable[[], Reward], config: ExecutorConfig | None = None, *,
                 name: str | None = None, higher_is_better: bool | None = None, cost_hint: float | None = None):
        if isinstance(factory, Reward) or not callable(factory):
            raise TypeError("ParallelReward needs a zero-argument factory returning a reward (a class, a "
                            "module-level function or a functools.partial of one), not "
                            f"{type(factory).__name__} instance; e.g. ParallelReward(MyReward) or "
                            "ParallelReward(functools.partial(MyReward, receptor='x.pdbqt'))")
        self.factory = factory
        self.config = config or ExecutorConfig(kind="process")
        probe = None
        if name is None or higher_is_better is None:
            probe = as_reward(factory())
        self.name = name if name is not None else probe.name
        self.higher_is_better = higher_is_better if higher_is_better is not None else probe.higher_is_better
        self.cost_hint = float(cost_hint if cost_hint is not None else getattr(probe, "cost_hint", 0.0))
        self.executor = self._make_executor(probe)

    def _make_executor(self, probe: Reward | None) -> BatchExecutor:
        cfg = self.config
        if cfg.kind == "serial":
            return SerialExecutor(self.factory, probe)
        if cfg.kind == "process":
            try:
                blob = pickle.dumps(self.factory)
            except Exception as e:
                raise TypeError(
                    f"reward {self.name!r}: the factory {self.factory!r} cannot be sent to worker processes "
                    f"({e}); use a module-level class or function (or functools.partial of one), not a "
                    "lambda or a local function, or executor kind 'serial' or 'ray'") from e
            key = hashlib.sha256(blob).hexdigest()
            return ProcessExecutor(key, blob, cfg.n_workers, cfg.start_method)
        if cfg.kind == "ray":
            return RayExecutor(self.factory, cfg, self.name)
        if cfg.kind == "inline":
            raise ConfigError("executor.kind 'inline' means no executor (the reward is called directly in this "
                              "process): call the reward itself, or build it with parallel_reward(factory, "
                              "config), which does that for 'inline'")
        raise ConfigError(f"executor.kind: {cfg.kind!r} is not one of ['inline', 'serial', 'process', 'ray']")

    # -- scoring -----------------------------------------------------------------------------------

    def score(self, seqs: list[str]) -> np.ndarray:
        cfg = self.config
        batches = [seqs[i:i + cfg.batch_size] for i in range(0, len(seqs), cfg.batch_size)]
        results: list[np.ndarray | None] = [None] * len(batches)
        attempts = [0] * len(batches)
        queue = deque(range(len(batches)))
        running: dict[Future, tuple[int, float, bool]] = {}  # future -> (batch index, deadline, on a new worker)

        def failed(i: int, error: BaseException) -> None:
            if attempts[i] <= cfg.retries:
                log.warning("reward %r: batch of %d failed (attempt %d of %d): %r; retrying", self.name,
                            len(batches[i]), attempts[i], cfg.retries + 1, error)
                queue.append(i)
                return
            message = (f"reward {self.name!r}: a batch of {len(batches[i])} sequence(s) failed after "
                       f"{attempts[i]} attempt(s) (first sequence {batches[i][0][:60]!r}): {error!r}")
            if cfg.on_batch_failure == "raise":
                raise RewardExecutorError(message) from error
            log.error("%s; returning NaN for this batch", message)
            results[i] = np.full(len(batches[i]), np.nan)

        try:
            while queue or running:
                while queue and len(running) < self.executor.capacity:
                    i = queue.popleft()
                    attempts[i] += 1
                    future, new_worker = self.executor.submit(batches[i], cfg.timeout)
                    allowed = cfg.timeout + (cfg.start_timeout if new_worker else 0.0)
                    running[future] = (i, time.monotonic() + allowed if cfg.timeout > 0 else math.inf, new_worker)
                next_deadline = min(d for _, d, _ in running.values())
                wait_s = None if next_deadline == math.inf else max(0.0, next_deadline - time.monotonic())
                done, _ = wait(list(running), timeout=wait_s, return_when=FIRST_COMPLETED)
                for future in done:
                    i, _, _ = running.pop(future)
                    try:
                        values = np.asarray(future.result(), dtype=np.float64).reshape(-1)
                        if values.shape[0] != len(batches[i]):
                            raise ValueError(f"returned {values.shape[0]} values for {len(batches[i])} sequences")
                    except Exception as e:  # noqa: BLE001 - user code, or a dead worker: retry
                        failed(i, e)
                    else:
                        results[i] = values
                now = time.monotonic()
                late = [f for f, (_, deadline, _) in running.items() if deadline <= now]
                if late:
                    for f in self.executor.abandon(late):  # innocent batches lost with the pool: run again
                        if f in running:
                            i, _, _ = running.pop(f)
                            attempts[i] -= 1
                            queue.appendleft(i)
                    for f in late:
                        i, _, new_worker = running.pop(f)
                        failed(i, BatchTimeout(self._timeout_message(len(batches[i]), new_worker)))
        except BaseException:  # a batch failed for good, or KeyboardInterrupt: stop the work still running
            if running:
                self.executor.abandon(list(running))
            raise
        return np.concatenate(results) if results else np.zeros(0)

    def _timeout_message(self, size: int, new_worker: bool) -> str:
        cfg = self.config
        if not new_worker:
            return f"batch of {size} did not finish within {cfg.timeout:g} s"
        return (f"batch of {size} did not finish within {cfg.timeout + cfg.start_timeout:g} s (timeout "
                f"{cfg.timeout:g} s + start_timeout {cfg.start_timeout:g} s): it was a new worker's first batch, "
                "which also starts the worker and builds its reward; if that takes long, raise "
                "executor.start_timeout")

    # -- lifetime ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Shut the workers down (a later call starts new ones)."""
        self.executor.close()

    def __enter__(self) -> ParallelReward:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ParallelReward({self.name!r}, kind={self.config.kind!r}, workers={self.executor.capacity})"


def parallel_reward(factory: Callable[[], Reward], config: ExecutorConfig | None = None, **metadata) -> Reward:
    """The reward built from `factory`, run as `config` says: kind `inline` (the default) builds it here and
    returns it to be called directly in this process; any other kind returns `ParallelReward(factory, config,
    **metadata)`, whose workers each build their own (close it when done, e.g. in a `with` block)."""
    config = config or ExecutorConfig()
    if config.kind == "inline":
        return as_reward(factory())
    return ParallelReward(factory, config, **metadata)


@contextmanager
def served_reward(factory: Callable[[], Reward], config: ExecutorConfig | None = None, **metadata):
    """`parallel_reward(factory, config)` for the length of a `with` block: an executor's workers are stopped
    when the block ends, however it ends."""
    reward = parallel_reward(factory, config, **metadata)
    try:
        yield reward
    finally:
        close = getattr(reward, "close", None)
        if callable(close):
            close()
