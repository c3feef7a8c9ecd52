"""Rewards by name: those that installed packages register as plug-ins (entry point group `vidd.rewards`).

An entry point names a Reward, a Reward subclass (made with no arguments when looked up) or a plain callable
`list[str] -> floats`; its module is imported on the first lookup of its name.
"""

from __future__ import annotations

from vidd.core import plugins
from vidd.core.errors import UserError
from vidd.rewards.base import Reward, as_reward

REGISTRY: dict[str, object] = {}


def lookup(name: str) -> Reward:
    """The reward registered under `name` by an installed plug-in."""
    obj = plugins.find(REGISTRY, plugins.REWARDS, name)
    if obj is None:
        raise UserError(f"unknown reward {name!r}; rewards of installed plug-ins: "
                        f"{plugins.known(REGISTRY, plugins.REWARDS) or 'none'}")
    if isinstance(obj, type) and issubclass(obj, Reward):
        return obj()
    if not callable(obj):
        raise UserError(f"plug-in reward {name!r} is {type(obj).__name__}, not a Reward or a callable")
    return as_reward(obj)
