"""Plug-ins: a package that declares `vidd.tasks`, `vidd.methods` and `vidd.rewards` entry points adds a task, a
method and a reward that vidd finds by name, loading the package only when a name is looked up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from vidd.core import plugins
from vidd.core.config import ConfigError
from vidd.core.errors import UserError
from vidd.rewards import registry
from vidd.tasks import Task
from vidd.training.objectives import Method

PLUGIN = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=70.1"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "vidd-test-plugin"
        version = "0.0.1"

        [project.entry-points."vidd.tasks"]
        plugin-gc = "vidd_test_plugin:PluginGC"
        [project.entry-points."vidd.methods"]
        plugin-vidd = "vidd_test_plugin:PluginVIDD"
        [project.entry-points."vidd.rewards"]
        plugin-at = "vidd_test_plugin:at_content"

        [tool.setuptools.package-data]
        vidd_test_plugin = ["presets/*.yaml"]
        """,
    "vidd_test_plugin/__init__.py": """
        from dataclasses import dataclass
        from pathlib import Path

        import numpy as np
        import torch

        from vidd.core.alphabets import DNA
        from vidd.core.config import option
        from vidd.diffusion.pretrain import ModelConfig
        from vidd.eval.metrics import diversity
        from vidd.tasks import Task
        from vidd.training.objectives import VIDD, VIDDConfig


        def gc_content(seqs):
            return np.array([(s.count("G") + s.count("C")) / len(s) for s in seqs])


        def at_content(seqs):
            return 1 - gc_content(seqs)


        class PluginGC(Task):
            name = "plugin-gc"
            alphabet = DNA
            length = 10
            presets_dir = Path(__file__).parent / "presets"

            def pretrained_model(self):
                torch.manual_seed(0)
                return ModelConfig(hidden=8, stacks=1, dilations=[1, 2]).build(DNA, self.length)

            def training_reward(self):
                return gc_content

            def evaluate(self, seqs, **options):
                return {"gc_median": float(np.median(gc_content(seqs))), "diversity": diversity(seqs)}


        @dataclass
        class PluginVIDDConfig(VIDDConfig):
            name: str = option("plugin-vidd", "the fine-tuning method")


        class PluginVIDD(VIDD):
            name = "plugin-vidd"
            Config = PluginVIDDConfig
        """,
    "vidd_test_plugin/presets/tiny.yaml": """
        # a two-iteration run of a tiny model
        iterations: 2
        steps: 4
        batch_size: 4
        accumulation: 1
        eval_every: 1
        eval_samples: 4
        final_samples: 4
        likelihood_samples: 2
        reward: {executor: {kind: serial}}
        """,
}


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict:
    """The environment of a subprocess that sees the plug-in, installed (not editable) into a folder of its
    own that goes on PYTHONPATH; the test environment itself is left as it was."""
    tmp = tmp_path_factory.mktemp("plugin")
    for name, text in PLUGIN.items():
        (tmp / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "src" / name).write_text(textwrap.dedent(text).lstrip())
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(site), str(tmp / "src")],
                   check=True, capture_output=True)
    assert (site / "vidd_test_plugin-0.0.1.dist-info" / "entry_points.txt").is_file()
    path = [str(site)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def vidd_cli(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidd", *args], env=env, cwd=cwd, capture_output=True, text=True)


def test_an_installed_plugin_task_trains_with_a_plugin_method_from_the_cli(plugin_env, tmp_path):
    r = vidd_cli(plugin_env, tmp_path, "finetune", "plugin-gc", "--preset", "tiny", "--out", "run",
                 "--set", "method=plugin-vidd")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "name: plugin-vidd" in (tmp_path / "run" / "config.yaml").read_text()
    assert "gc_median" in json.loads((tmp_path / "run" / "final_eval.json").read_text())
    shown = vidd_cli(plugin_env, tmp_path, "config", "finetune", "--method", "plugin-vidd")
    assert shown.returncode == 0 and "method `plugin-vidd`" in shown.stdout and "`method.alpha`" in shown.stdout


def test_an_installed_plugin_reward_is_found_by_name(plugin_env, tmp_path):
    probe = ("import sys; from vidd.rewards.registry import lookup; "
             "print(sys.modules.get('vidd_test_plugin') is None, lookup('plugin-at')(['AATT', 'GGCA']).tolist())")
    r = subprocess.run([sys.executable, "-c", probe], env=plugin_env, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "[1.0,", "0.25]"]  # not imported before the lookup


def test_without_the_plugin_its_names_are_unknown(tmp_path):
    r = vidd_cli(dict(os.environ), tmp_path, "finetune", "plugin-gc", "--out", "run")
    assert r.returncode == 2 and "unknown task 'plugin-gc'; known tasks:" in r.stderr


# ---------------------------------------------------------------- lookups, in this process (fake entry points)
@pytest.fixture
def entry_points(monkeypatch, tmp_path):
    """Declare entry points (name -> 'module:attribute' of a module written into tmp_path) for this test; the
    registries are copies, so nothing stays registered."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(Task, "registry", dict(Task.registry))
    monkeypatch.setattr(Method, "registry", dict(Method.registry))
    monkeypatch.setattr(registry, "REGISTRY", {})
    declared: list[EntryPoint] = []
    monkeypatch.setattr(plugins, "entry_points", lambda group, name=None: [
        p for p in declared if p.group == group and name in (None, p.name)])

    def declare(group: str, name: str, target: str, source: str):
        module = target.split(":")[0]
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        declared.append(EntryPoint(name, target, group))
        return module
    return declare


def test_a_plugin_module_is_imported_only_when_its_name_is_looked_up(entry_points):
    module = entry_points(plugins.REWARDS, "lazy", "lazy_reward_plugin:score",
                          "def score(seqs):\n    return [len(s) for s in seqs]\n")
    Task.get("dhs-hepg2")
    with pytest.raises(UserError, match="unknown task 'nope'; known tasks: .*dhs-hepg2"):
        Task.get("nope")
    assert module not in sys.modules
    assert registry.lookup("lazy")(["AC", "ACG"]).tolist() == [2.0, 3.0] and module in sys.modules


def test_unknown_names_list_the_installed_plugins(entry_points):
    entry_points(plugins.METHODS, "their-method", "unloaded_method_plugin:M", "")
    with pytest.raises(ConfigError, match=r"unknown method 'nope'; known: \[.*'their-method'.*'vidd'"):
        Method.lookup("nope")
    with pytest.raises(UserError, match=r"unknown reward 'nope'; rewards of installed plug-ins: none"):
        registry.lookup("nope")


@pytest.mark.parametrize("source, message", [
    ("raise ImportError('no module named torch_extra')", r"failed to load: ImportError: no module named torch_extra"),
    ("class NotATask:\n    pass\n", r"is not a Task subclass"),
])
def test_a_broken_plugin_is_named(entry_points, source, message):
    entry_points(plugins.TASKS, "broken", "broken_task_plugin:NotATask", source)
    with pytest.raises(UserError, match=r"plug-in 'broken' \(vidd.tasks entry point 'broken_task_plugin:NotATask'\) "
                       + message):
        Task.get("broken")
