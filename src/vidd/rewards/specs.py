"""Rewards named on the command line (`vidd finetune --reward SPEC`, `--eval-reward SPEC`, docs/rewards.md):

- `module:function`: a callable of an importable module (installed, or on PYTHONPATH);
- `path/to/file.py:function`: a callable defined in a Python file;
- `oracle:PATH`: an assay oracle trained by `vidd train-oracle --data` (docs/oracles.md).

The callable maps a list of sequences to one float per sequence (a `Reward` instance or class works too:
a class is instantiated without arguments). A spec without `:` is the name of a plug-in reward
(`vidd.rewards.registry`, entry point group `vidd.rewards`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from vidd.core.config import ConfigError
from vidd.rewards import registry
from vidd.core.errors import UserError
from vidd.rewards.assay_oracle import AssayOracleReward
from vidd.rewards.base import FunctionReward, Reward

ORACLE_PREFIX = "oracle:"
FORMS = "module:function, path/to/file.py:function or oracle:PATH"


class RewardSpecError(UserError, ValueError):
    pass


def load_reward(spec: str, pessimism: float = 0.0) -> Reward:
    """The reward a spec names (module docstring); `pessimism` (k of mean - k std) applies to `oracle:` specs."""
    spec = spec.strip()
    if spec.startswith(ORACLE_PREFIX):
        return AssayOracleReward(spec[len(ORACLE_PREFIX):], pessimism)
    if pessimism:
        raise ConfigError(f"task.pessimism: applies to oracle:PATH rewards, not to {spec!r}")
    if ":" not in spec:
        return registry.lookup(spec)
    target, attribute = spec.rsplit(":", 1)
    module = _file_module(target) if target.endswith(".py") else _import(target, spec)
    if not hasattr(module, attribute):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise RewardSpecError(f"reward {spec!r}: {target} defines no {attribute!r} (its callables: "
                              f"{', '.join(found) or 'none'})")
    obj = getattr(module, attribute)
    if inspect.isclass(obj) and issubclass(obj, Reward):
        obj = obj()
    if not callable(obj):
        raise RewardSpecError(f"reward {spec!r}: {attribute!r} is a {type(obj).__name__}, not a callable "
                              f"list[str] -> floats")
    return obj if isinstance(obj, Reward) else FunctionReward(obj, name=attribute)


def absolute_spec(spec: str) -> str:
    """`spec` with its file or oracle path made absolute, as run configs record it (a resumed run may
    start from another folder)."""
    spec = spec.strip()
    if spec.startswith(ORACLE_PREFIX):
        return ORACLE_PREFIX + str(Path(spec[len(ORACLE_PREFIX):]).resolve())
    target, sep, attribute = spec.rpartition(":")
    if sep and target.endswith(".py"):
        return f"{Path(target).resolve()}:{attribute}"
    return spec


def _import(name: str, spec: str):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise RewardSpecError(f"reward {spec!r}: cannot import module {name!r} ({e}); give {FORMS}") from e


def _file_module(path: str):
    """Execute a Python file once per process as a module (registered under a name derived from its path,
    so that objects it defines can be pickled by reference within the process)."""
    file = Path(path).resolve()
    if not file.is_file():
        raise RewardSpecError(f"reward file not found: {path}")
    name = f"vidd_reward_{file.stem}_{hashlib.sha256(str(file).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception:
        del sys.modules[name]
        raise
    return module
