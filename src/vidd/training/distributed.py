"""Data-parallel fine-tuning over torch.distributed processes (launched with torchrun).

The trainer splits each iteration's `accumulation` chunks of `batch_size` roll-ins round-robin over the
processes (chunk j runs on rank j mod W, with randomness that depends only on (seed, iteration, j)),
sums the gradients across processes and steps the same optimiser on every process, so the models stay
identical without DistributedDataParallel hooks. `ProcessGroup` is the whole interface to
torch.distributed: with one process every collective is the identity, so the trainer has one code path.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

from vidd.core.errors import UserError

T = TypeVar("T")


def world_size() -> int:
    """Processes of the current run: the initialised process group's size, else torchrun's WORLD_SIZE, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    """This process's rank: the initialised process group's, else torchrun's RANK, else 0 (the main process)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


@dataclass
class ProcessGroup:
    world: int = 1
    rank: int = 0
    device: str = "cpu"  # this process's torch device
    owned: bool = False  # this object initialised the default process group (and destroys it in close())

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def join(cls, backend: str = "auto", device: str = "cpu") -> "ProcessGroup":
        """The default process group: the one already initialised, or (torchrun: WORLD_SIZE > 1 in the
        environment) a new one from torchrun's environment variables. A bare `cuda` device becomes
        `cuda:LOCAL_RANK` when there is more than one process."""
        world = world_size()
        if world <= 1:
            return cls(device=device)
        if not dist.is_available():
            raise UserError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        cuda = device.startswith("cuda")
        if device == "cuda":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        if cuda:
            torch.cuda.set_device(device)
        owned = not dist.is_initialized()
        if owned:
            dist.init_process_group(("nccl" if cuda else "gloo") if backend == "auto" else backend)
        return cls(dist.get_world_size(), dist.get_rank(), device, owned)

    def close(self) -> None:
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()
            self.owned = False

    # ------------------------------------------------------------ collectives
    def _tensor_device(self) -> torch.device:
        """Where collective tensors live: NCCL reduces CUDA tensors only."""
        return torch.device(self.device if dist.get_backend() == "nccl" else "cpu")

    def gather(self, obj: T) -> list[T]:
        """Every process's `obj`, in rank order (picklable objects)."""
        if self.world == 1:
            return [obj]
        out: list = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def sum(self, value: int) -> int:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self._tensor_device())
        dist.all_reduce(t)
        return int(t.item())

    def on_main(self, fn: Callable[[], T]) -> T:
        """fn() on the main process, its result sent to every process. An exception on the main process is
        raised on every process, so none is left waiting in a later collective. Also a barrier."""
        result, error = None, None
        if self.main:
            try:
                result = fn()
            except Exception as e:  # re-raised below, on every process
                error = e
        if self.world > 1:
            box = [(result, error)]
            dist.broadcast_object_list(box, src=0)
            result, error = box[0]
        if error is not None:
            raise error
        return result

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Give every process the main process's parameters and buffers."""
        if self.world == 1:
            return
        with torch.no_grad():
            for t in (*module.parameters(), *module.buffers()):
                dist.broadcast(t.data, src=0)

    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Sum every parameter's gradient over the processes (a parameter without a gradient on every
        process keeps none, so the optimiser skips it exactly as in a single-process run)."""
        if self.world == 1 or not params:
            return
        present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32,
                               device=self._tensor_device())
        dist.all_reduce(present)
        by_dtype: dict[torch.dtype, list[torch.nn.Parameter]] = defaultdict(list)
        for p, flag in zip(params, present.tolist()):
            if flag:
                by_dtype[p.dtype].append(p)
            else:
                p.grad = None
        for group in by_dtype.values():
            flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in group])
            dist.all_reduce(flat)
            offset = 0
            for p in group:
                p.grad = flat[offset:offset + p.numel()].view_as(p)
                offset += p.numel()


def merge_reward_accounting(reward, parts: list[dict], calls: int, failures: int) -> None:
    """Make a `CountedReward` identical on every process after an iteration. `parts` are every process's
    {"calls", "failures": increments since (calls, failures), "journal": newly cached sequences}. A
    sequence paid for (through `__call__`) on k processes counts once, as it would have in one process
    with one cache; calls recorded row by row (`record`) and failures add up."""
    paid = Counter(s for part in parts for s, (_, distinct) in part["journal"].items() if distinct)
    reward.calls = calls + sum(p["calls"] for p in parts) - sum(k - 1 for k in paid.values())
    reward.failures = failures + sum(p["failures"] for p in parts)
    for part in parts:
        reward.cache.update((s, v) for s, (v, _) in part["journal"].items())
    reward.journal = {}
