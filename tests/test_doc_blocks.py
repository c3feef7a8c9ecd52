"""Every code block of the README and docs/ is run or checked (the list below says which and how):

- Python blocks are executed, with tiny stand-ins for what they need (a model folder, a small config),
  except the blocks listed in PYTHON_SKETCHES, which are signatures or need an external program: those
  are compiled only.
- Shell blocks (```bash, and untagged blocks of commands) are parsed by `bash -n`; every `vidd` command in
  them must name an existing command, options it has, presets its task has and `--set` fields its config
  has; every `python SCRIPT` and `bash SCRIPT` must exist. They are not run: most train for minutes.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import typer
from support.toy import toy_model

from vidd.cli import app
from vidd.core import config as cfg
from vidd.diffusion.pretrain import PretrainConfig
from vidd.rewards.assay_oracle import AssayOracleConfig
from vidd.rewards.oracle import OracleConfig
from vidd.tasks import Task
from vidd.training import FinetuneConfig

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
#: Python blocks that are compiled, not run, and why: (file, a line of the block)
PYTHON_SKETCHES = {
    ("docs/rewards.md", "class Reward:"): "the interface's signatures (bodies are `...`)",
    ("docs/rewards.md", "from vidd.rewards.executors import ExecutorConfig, ParallelReward"):
        "needs a docking program and receptor files",
    ("docs/rewards.md", 'ExecutorConfig(kind="ray"'): "needs a Ray cluster",
    ("docs/tasks/protein.md", "pdl1_full.pdb"): "needs the user's PD-L1 structure file",
    ("docs/tasks/protein.md", "colabdesign"): "a never-run sketch of a ColabDesign adapter (needs ColabDesign and AF2 "
                                             "parameters)",
}
#: stand-ins a block may use without defining them (the reader's model and config)
TINY = {"iterations": 2, "steps": 4, "batch_size": 4, "accumulation": 1, "eval_samples": 4, "final_samples": 4,
        "likelihood_samples": 2, "eval_every": 1}
CONFIGS = {"finetune": FinetuneConfig, "bench": FinetuneConfig, "pretrain": PretrainConfig,
           "train-oracle": OracleConfig}
SHELL_START = ("vidd ", "python ", "torchrun ", "bash ", ".venv/", "git ")


def blocks(kind: str) -> list[tuple[str, str]]:
    """(file relative to the repository, code) of every block of `kind` ("python" or "shell")."""
    out = []
    for path in DOCS:
        for lang, code in FENCE.findall(path.read_text()):
            first = code.lstrip().split("\n", 1)[0]
            shell = lang in ("bash", "sh") or (not lang and first.startswith(SHELL_START))
            if (kind == "python" and lang == "python") or (kind == "shell" and shell):
                out.append((path.relative_to(ROOT).as_posix(), code))
    return out


def sketch(name: str, code: str) -> str | None:
    return next((why for (file, line), why in PYTHON_SKETCHES.items() if file == name and line in code), None)


@pytest.mark.parametrize("name, code", blocks("python"), ids=lambda x: x if "\n" not in x else None)
def test_python_blocks_run(name, code, tmp_path, monkeypatch):
    compile(code, name, "exec")
    if sketch(name, code):
        return
    monkeypatch.chdir(tmp_path)
    toy_model(length=12).save_pretrained(tmp_path / "runs" / "my_model" / "model")  # what `vidd pretrain` writes
    small = cfg.build(FinetuneConfig, TINY)
    # the README builds its own config: the same block with 2 iterations instead of 50, to stay fast
    exec(compile(code.replace('"iterations": 50', '"iterations": 2'), name, "exec"),
         {"model": toy_model(length=12), "cfg": small, "__name__": "__docs__"})


def test_every_sketch_is_still_in_the_docs():
    found = {(file, line) for file, line in PYTHON_SKETCHES for name, code in blocks("python")
             if name == file and line in code}
    assert found == set(PYTHON_SKETCHES)


def commands(code: str) -> list[list[str]]:
    """The simple commands of a shell block (continuations joined, comments dropped, split at && and ;)."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        current = []
        for w in shlex.split(line, comments=True) + [";"]:
            if w in ("&&", ";", "||", "|"):
                out += [current] if current else []
                current = []
            else:
                current.append(w)
    return out


def vidd_args(words: list[str]) -> list[str] | None:
    """The arguments after `vidd` (also `.venv/bin/vidd`, `python -m vidd`, `torchrun ... -m vidd`)."""
    for i, w in enumerate(words):
        if w.endswith("vidd") and (i == 0 or words[i - 1] == "-m"):
            return words[i + 1:]
    return None


def check_vidd(args: list[str], where: str) -> None:
    group = typer.main.get_command(app)
    if args[0].startswith("-"):  # an option of `vidd` itself (--version, --help)
        assert args[0] in {o for p in group.params for o in p.opts}, f"{where}: `vidd` has no option {args[0]}"
        return
    command = group.commands.get(args[0])
    assert command is not None, f"{where}: no command `vidd {args[0]}`"
    options = {o for p in command.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
    sets, preset = [], None
    for i, a in enumerate(args):
        if a.startswith("--"):
            assert a.split("=")[0] in options, f"{where}: `vidd {args[0]}` has no option {a}"
        if a == "--set":
            sets.append(args[i + 1])
        if a == "--preset":
            preset = args[i + 1]
    if preset is not None:
        assert preset in Task.registry[args[1]].preset_names(), f"{where}: task {args[1]} has no preset {preset}"
    if sets:
        config = AssayOracleConfig if args[0] == "train-oracle" and "--data" in args else CONFIGS[args[0]]
        cfg.build(config, cfg.parse_overrides(sets))  # every --set names a field and a valid value


@pytest.mark.parametrize("name, code", blocks("shell"), ids=lambda x: x if "\n" not in x else None)
def test_shell_blocks_parse_and_name_real_commands_options_and_files(name, code):
    subprocess.run(["bash", "-n"], input=code, text=True, check=True)
    for words in commands(code):
        args = vidd_args(words)
        if args is not None:
            check_vidd(args, name)
        elif (words[0] in ("python", "bash") or words[0].endswith("/python")) and not {"-m", "-c"} & set(words):
            script = next(w for w in words[1:] if not w.startswith("-"))
            assert (ROOT / script).is_file(), f"{name}: no {script}"
