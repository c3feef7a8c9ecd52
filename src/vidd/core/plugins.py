"""Plug-ins: tasks, rewards and methods of other packages, registered through package entry points.

A package declares, in its pyproject.toml,

    [project.entry-points."vidd.tasks"]
    my-task = "my_package.tasks:MyTask"          # a Task subclass
    [project.entry-points."vidd.methods"]
    my-method = "my_package.methods:MyMethod"    # a Method subclass
    [project.entry-points."vidd.rewards"]
    my-reward = "my_package.rewards:my_reward"   # a Reward, or a callable list[str] -> floats

and vidd finds `my-task` etc. by name once the package is installed. An entry point is loaded (its module
imported) only when its name is looked up and vidd has no built-in of that name.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from vidd.core.errors import UserError

TASKS, METHODS, REWARDS = "vidd.tasks", "vidd.methods", "vidd.rewards"


def find(registry: dict, group: str, name: str, base: type | None = None):
    """`registry[name]`, else the object that the entry point `name` of `group` names (checked to be a subclass
    of `base`, when given, and added to `registry`), else None."""
    if name not in registry:
        for point in entry_points(group=group, name=name):
            try:
                obj = point.load()
            except Exception as e:  # a broken plug-in is its author's to fix: say which one
                raise UserError(f"plug-in {name!r} ({group} entry point {point.value!r}) failed to load: "
                                f"{type(e).__name__}: {e}") from e
            if base is not None and not (isinstance(obj, type) and issubclass(obj, base)):
                raise UserError(f"plug-in {name!r} ({group} entry point {point.value!r}) is not a "
                                f"{base.__name__} subclass")
            registry[name] = obj
            break
    return registry.get(name)


def known(registry: dict, group: str) -> list[str]:
    """The names in `registry` and those of every installed entry point of `group`, sorted."""
    return sorted(set(registry) | {point.name for point in entry_points(group=group)})
