"""Mutation testing of vidd's core maths: plant one small bug at a time and check that a fast test fails.

Each mutant is one change of the syntax tree of one file (an operator swapped, a comparison made
strict or loose, a condition negated, a constant changed, min <-> max, mean <-> sum, a call
statement deleted, ...). The mutant is written into a private COPY of the tree (src/ and tests/,
under a temporary folder; the working tree is never modified), and only the tests mapped to that
file (`TESTS` below) run against it, with `-x` and a per-mutant time limit. A mutant is *killed*
when the tests fail (or time out), *survived* when they pass.

The report (Markdown and JSON) lists the kill rate per file and every surviving mutant with the
justification found for its key in `justifications.yaml` next to the report (a survivor without one
is marked "not reviewed").

    python scripts/mutation.py                       # every file, writes docs/results/mutation/
    python scripts/mutation.py --files src/vidd/training/value.py --list   # just list the mutants
    python scripts/mutation.py --max-per-file 60 --seed 0

`scripts/mutation.sh` runs it in the background with `nice` (it is not part of CI).
"""

from __future__ import annotations

import argparse
import ast
import copy
import datetime as _dt
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT_DIR = ROOT / "docs" / "results" / "mutation"

# The fast tests that guard each mutated file, in the order they run (with -x the first failure ends a
# mutant's run, so the most sensitive unit tests come first). Node ids (file::test) select single tests.
FINETUNE_UNIT = [
    "tests/training/objectives/test_vidd_weights.py",
    "tests/training/objectives/test_ddpo_clip.py",
    "tests/training/objectives/test_method_units.py",
    "tests/training/test_lazy_update.py",
    "tests/training/test_rollin_units.py",
    "tests/training/test_derived_calls.py",
]
TRAINING = ["tests/training/test_exact_toy_alpha.py", "tests/training/test_trainer.py", "tests/training/objectives/test_baselines.py"]
TESTS: dict[str, list[str]] = {
    "src/vidd/eval/metrics.py": ["tests/eval/test_metrics_values.py",
                                 "tests/eval/test_motifs_metrics.py::test_diversity_hand_computed",
                                 "tests/eval/test_motifs_metrics.py::test_diversity_matches_bruteforce",
                                 "tests/eval/test_motifs_metrics.py::test_metric_errors",
                                 "tests/eval/test_motifs_metrics.py::test_uniqueness",
                                 "tests/eval/test_motifs_metrics.py::test_kmer_counts_tiny",
                                 "tests/eval/test_motifs_metrics.py::test_kmer_corr_identical_and_scaling",
                                 "tests/eval/test_motifs_metrics.py::test_motif_corr",
                                 "tests/eval/test_motifs_metrics.py::test_finite_median_skips_unscorable_samples"],
    "src/vidd/rewards/counted.py": ["tests/rewards/test_counted_units.py", "tests/training/test_trainer.py",
                                    "tests/training/objectives/test_baselines.py",
                                    "tests/rewards/test_executors.py::test_nan_reaches_counted_reward_penalty",
                                    "tests/rewards/test_executors.py::test_counted_reward_over_parallel_counts_distinct_calls"],
    "src/vidd/training/value.py": [*FINETUNE_UNIT, *TRAINING],
    "src/vidd/training/rollin.py": [*FINETUNE_UNIT, *TRAINING],
    "src/vidd/training/objectives/base.py": [*FINETUNE_UNIT, *TRAINING],
    "src/vidd/training/objectives/vidd.py": [*FINETUNE_UNIT, *TRAINING],
    "src/vidd/training/objectives/standard.py": [*FINETUNE_UNIT, *TRAINING],
    "src/vidd/training/objectives/ddpo.py": [*FINETUNE_UNIT, *TRAINING],
    "src/vidd/training/objectives/ddpp.py": [*FINETUNE_UNIT, *TRAINING],
    "src/vidd/training/objectives/drakes.py": [*FINETUNE_UNIT, *TRAINING],
    "src/vidd/diffusion/masked.py": ["tests/diffusion/test_masked_units.py", "tests/diffusion/test_masked.py",
                                     *FINETUNE_UNIT, *TRAINING,
                                     "tests/training/test_trainer_logs.py"],
}

# The bugs planted by hand in issue 19 (each survived the suite of the time, or was caught only by a unit
# test), as text replacements: (what, file, original text, planted text, tests). `--planted` checks that
# every one of them is killed and writes planted.md / planted.json next to the report.
PLANTED = [
    ("VIDD's weight drops the division by alpha", "src/vidd/training/objectives/vidd.py",
     "log_w = (v_s - v_t) / cfg.alpha", "log_w = (v_s - v_t)", None),
    ("the soft value with completions > 0 is a plain mean, not a log-mean-exp", "src/vidd/training/value.py",
     "return log_mean_exp(values, self.alpha, axis=1)", "return values.mean(axis=1)", None),
    ("DDPO keeps only the upper clip bound", "src/vidd/training/objectives/ddpo.py",
     "ratio.clamp(1 - eps, 1 + eps)", "ratio.clamp(max=1 + eps)", None),
    ("the lazy update never copies the student, in ddpo-x0", "src/vidd/training/objectives/ddpo.py",
     '    name = "ddpo-x0"\n', '    name = "ddpo-x0"\n\n    def end_of_iteration(self, ctx):\n        pass\n', None),
    ("diversity computed as 1 - diversity (metric)", "src/vidd/eval/metrics.py",
     "return float(differing / (m * (m - 1) * length))", "return 1 - float(differing / (m * (m - 1) * length))",
     None),
    ("diversity computed as 1 - diversity (the trainer's eval_diversity)", "src/vidd/training/trainer.py",
     '"eval_diversity": self.samples.diversity(seqs)', '"eval_diversity": 1 - self.samples.diversity(seqs)',
     ["tests/training/test_trainer_logs.py"]),
    ("the sign of the value difference flipped", "src/vidd/training/objectives/vidd.py",
     "log_w = (v_s - v_t) / cfg.alpha", "log_w = (v_t - v_s) / cfg.alpha", None),
    ("the reveal probability wrong (the stay probability m_s / m_t)", "src/vidd/diffusion/masked.py",
     "reveal = (self._per_row(m_t, x_t) - self._per_row(m_s, x_t)) / self._per_row(m_t, x_t)",
     "reveal = self._per_row(m_s, x_t) / self._per_row(m_t, x_t)", None),
    ("the cache counted as new calls", "src/vidd/rewards/counted.py",
     "self.calls += len(todo)", "self.calls += len(seqs)", None),
]

# ------------------------------------------------------------------------------------------ mutants
BINOP_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
               ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd}
CMP_SWAPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
             ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
# function / method names swapped for each other (np.minimum <-> np.maximum, x.mean() -> x.sum(), ...)
NAME_SWAPS = {"min": "max", "max": "min", "minimum": "maximum", "maximum": "minimum", "mean": "sum",
              "sum": "mean", "argmax": "argmin", "argmin": "argmax", "any": "all", "all": "any",
              "clamp_min": "clamp_max", "clamp_max": "clamp_min", "log_softmax": "softmax",
              "logsumexp": "sum", "exp": "log", "log": "exp", "sqrt": "abs"}
# functions left alone: configuration checks and persistence (not maths; covered by the config, checkpoint and
# resume tests, which are too slow to run per mutant)
EXCLUDED_FUNCTIONS = {"validate", "spec", "save", "from_checkpoint", "from_spec", "load", "state_dict",
                      "load_state_dict", "__init_subclass__", "lookup", "__init__"}
OP_TEXT = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
           ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
           ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in", ast.NotIn: "not in", ast.Is: "is",
           ast.IsNot: "is not", ast.And: "and", ast.Or: "or"}


@dataclass
class Mutant:
    file: str
    index: int  # position of the mutated node in ast.walk order (how the mutant is re-applied)
    operator: str  # kind of mutation
    line: int
    col: int
    description: str  # e.g. "`/` -> `*`"
    source_line: str = ""
    mutated: str = ""  # the mutated statement (its header for a compound statement)
    status: str = "pending"  # killed | timeout | survived | error
    seconds: float = 0.0
    failed_test: str = ""
    justification: str = ""
    dup: int = 0  # n > 0: the n-th other mutant of the file with the same line, column and change


    @property
    def key(self) -> str:
        """Identity for justifications: file, line, column, operator and the change itself (stable while the
        file's lines do not move)."""
        key = f"{self.file}:{self.line}:{self.col}:{self.operator}:{self.description}"
        return f"{key}#{self.dup}" if self.dup else key


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _excluded(node: ast.AST, parents: dict) -> bool:
    """Nodes not worth mutating: docstrings, annotations, messages, config option defaults, logging,
    imports, `__all__`."""
    child, p = node, parents.get(node)
    while p is not None:
        if isinstance(p, (ast.Import, ast.ImportFrom, ast.JoinedStr, ast.Raise, ast.Assert)):
            return True
        if isinstance(p, ast.AnnAssign) and child is p.annotation:
            return True
        if isinstance(p, ast.arg) and child is p.annotation:
            return True
        if isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)) and child is p.returns:
            return True
        if isinstance(p, ast.Call) and (_call_name(p) == "option" or isinstance(p.func, ast.Attribute)
                                        and isinstance(p.func.value, ast.Name) and p.func.value.id in ("log", "logging")):
            return True
        if isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)) and p.name in EXCLUDED_FUNCTIONS:
            return True
        if isinstance(p, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in p.targets):
            return True
        child, p = p, parents.get(p)
    return False


def _is_docstring(node: ast.AST, parents: dict) -> bool:
    p = parents.get(node)
    return isinstance(p, ast.Expr) and isinstance(node, ast.Constant) and isinstance(node.value, str)


def candidate_mutations(tree: ast.AST) -> list[tuple[int, str, str, int, int]]:
    """(walk index, operator, description, line, column) of every mutation of the tree."""
    parents = _parents(tree)
    out = []
    for i, node in enumerate(ast.walk(tree)):
        if not hasattr(node, "lineno") or _excluded(node, parents) or _is_docstring(node, parents):
            continue
        line = (node.lineno, node.col_offset)
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in BINOP_SWAPS:
            new = BINOP_SWAPS[type(node.op)]
            out.append((i, "binop", f"`{OP_TEXT[type(node.op)]}` -> `{OP_TEXT[new]}`", *line))
        elif isinstance(node, ast.Compare):
            for j, op in enumerate(node.ops):
                if type(op) in CMP_SWAPS:
                    new = CMP_SWAPS[type(op)]
                    out.append((i, f"compare{j}", f"`{OP_TEXT[type(op)]}` -> `{OP_TEXT[new]}`", *line))
        elif isinstance(node, ast.BoolOp):
            new = ast.Or if isinstance(node.op, ast.And) else ast.And
            out.append((i, "boolop", f"`{OP_TEXT[type(node.op)]}` -> `{OP_TEXT[new]}`", *line))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not, ast.Invert)):
            sym = {ast.USub: "-", ast.Not: "not ", ast.Invert: "~"}[type(node.op)]
            out.append((i, "unary", f"drop `{sym.strip()}`", *line))
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float) and not isinstance(node.value, bool):
            out.append((i, "number", f"`{node.value!r}` -> `{_new_number(node.value)!r}`", *line))
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            out.append((i, "bool", f"`{node.value}` -> `{not node.value}`", *line))
        elif isinstance(node, ast.Call):
            name = _call_name(node)
            if name in NAME_SWAPS:
                out.append((i, "call", f"`{name}` -> `{NAME_SWAPS[name]}`", *line))
            if name == "log_mean_exp":
                out.append((i, "lme", "`log_mean_exp(v, a, axis)` -> `v.mean(axis)`", *line))
        if isinstance(node, (ast.If, ast.IfExp)):
            out.append((i, "negate", "negate the condition", *line))
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and \
                not isinstance(parents.get(node), ast.Module):
            out.append((i, "delete", f"delete the call statement `{_call_name(node.value)}(...)`", *line))
        if isinstance(node, ast.AugAssign):
            out.append((i, "delete", "delete the augmented assignment", *line))
    return out


def _new_number(v):
    if isinstance(v, int):
        return {0: 1, 1: 0}.get(v, v + 1)
    return 1.0 if v == 0 else v + 1.0 if abs(v) < 1e-3 else v * 2.0


def _brief(stmt: ast.AST) -> str:
    """One line for a statement: a compound statement by its header."""
    if isinstance(stmt, (ast.If, ast.While)):
        text = f"{'if' if isinstance(stmt, ast.If) else 'while'} {ast.unparse(stmt.test)}:"
    elif isinstance(stmt, ast.For):
        text = f"for {ast.unparse(stmt.target)} in {ast.unparse(stmt.iter)}:"
    elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        text = f"def {stmt.name}(...):" if not isinstance(stmt, ast.ClassDef) else f"class {stmt.name}:"
    elif isinstance(stmt, ast.With):
        text = f"with {', '.join(ast.unparse(i) for i in stmt.items)}:"
    else:
        text = ast.unparse(stmt)
    text = " ".join(text.split())
    return text if len(text) <= 160 else text[:157] + "..."


def mutated_statement(tree: ast.AST, index: int, operator: str) -> str:
    """The statement holding mutation `index` of `tree`, mutated, in one line."""
    mutated = apply_mutation(tree, index, operator)
    node = next(n for i, n in enumerate(ast.walk(tree)) if i == index)
    target = (node.lineno, node.col_offset)
    if operator == "delete":
        return "pass"
    stmts = [n for n in ast.walk(mutated) if isinstance(n, ast.stmt)
             and (n.lineno, n.col_offset) <= target <= (n.end_lineno, n.end_col_offset)]
    return _brief(min(stmts, key=lambda n: (n.end_lineno - n.lineno, n.end_col_offset - n.col_offset))) if stmts else ""


def apply_mutation(tree: ast.AST, index: int, operator: str) -> ast.AST:
    tree = copy.deepcopy(tree)
    parents = _parents(tree)
    node = next(n for i, n in enumerate(ast.walk(tree)) if i == index)
    if operator == "binop":
        node.op = BINOP_SWAPS[type(node.op)]()
    elif operator.startswith("compare"):
        j = int(operator[len("compare"):])
        node.ops[j] = CMP_SWAPS[type(node.ops[j])]()
    elif operator == "boolop":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif operator == "unary":
        _replace(parents[node], node, node.operand)
    elif operator == "number":
        node.value = _new_number(node.value)
    elif operator == "bool":
        node.value = not node.value
    elif operator == "call":
        if isinstance(node.func, ast.Name):
            node.func.id = NAME_SWAPS[node.func.id]
        else:
            node.func.attr = NAME_SWAPS[node.func.attr]
    elif operator == "lme":
        values = node.args[0]
        axis = next((k.value for k in node.keywords if k.arg == "axis"), ast.Constant(None))
        new = ast.Call(ast.Attribute(values, "mean", ast.Load()), [], [ast.keyword("axis", axis)])
        _replace(parents[node], node, new)
    elif operator == "negate":
        node.test = ast.UnaryOp(ast.Not(), node.test)
    elif operator == "delete":
        _replace(parents[node], node, ast.Pass())
    else:
        raise ValueError(operator)
    return ast.fix_missing_locations(tree)


def _replace(parent: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for name, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, name, new)
            return
        if isinstance(value, list):
            for k, item in enumerate(value):
                if item is old:
                    value[k] = new
                    return
    raise ValueError("node not found in its parent")


def mutants_of(path: str) -> list[Mutant]:
    source = (ROOT / path).read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    baseline = ast.unparse(tree)
    out = []
    for index, operator, description, line, col in candidate_mutations(tree):
        try:
            code = ast.unparse(apply_mutation(tree, index, operator))
        except Exception:  # noqa: BLE001 - an operator that does not apply here
            continue
        if code == baseline:
            continue
        out.append(Mutant(path, index, operator, line, col, description, lines[line - 1].strip(),
                          mutated_statement(tree, index, operator)))
        out[-1].dup = sum(m.key == out[-1].key for m in out[:-1])  # e.g. the two `*` of `a * b * c`
    return out


# ------------------------------------------------------------------------------------------- running
_PRELOADED = False


def preload() -> None:
    """Import the heavy dependencies once in the parent; every forked mutant run starts with them loaded
    (vidd itself is never imported here, so each child imports the mutated copy)."""
    global _PRELOADED
    if not _PRELOADED:
        import numpy  # noqa: F401
        import pytest  # noqa: F401
        import scipy.stats  # noqa: F401
        import torch  # noqa: F401
        import yaml  # noqa: F401
        _PRELOADED = True


def run_tests(copy_root: Path, tests: list[str], timeout: float, log_path: Path) -> tuple[str, float, str]:
    """Run the tests on the tree at copy_root in a forked child: (killed | survived | timeout, seconds,
    first failing test)."""
    start = time.perf_counter()
    args = [*tests, "-x", "-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=",
            "-W", "ignore::DeprecationWarning"]
    pid = os.fork()
    if pid == 0:  # child: never returns
        try:
            fd = os.open(str(log_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.setpgid(0, 0)
            os.chdir(copy_root)
            sys.dont_write_bytecode = True
            sys.path.insert(0, str(copy_root / "src"))
            import pytest

            rc = pytest.main(args)
        except BaseException:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            rc = 99
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(rc))
    deadline = start + timeout
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.perf_counter() > deadline:
                _kill(pid)
                return "timeout", time.perf_counter() - start, ""
            time.sleep(0.05)
    except BaseException:  # interrupted: take the child down with us
        _kill(pid)
        raise
    seconds = time.perf_counter() - start
    rc = os.waitstatus_to_exitcode(status)
    failed = ""
    try:
        for text in log_path.read_text(errors="replace").splitlines():
            if text.startswith(("FAILED ", "ERROR ")):
                failed = text.split(" ", 1)[1].split(" - ")[0]
                break
    except OSError:
        pass
    if rc == 0:
        return "survived", seconds, ""
    if rc in (1, 2, 3, 99) or rc < 0:  # test failures, collection / internal errors, crashes
        return "killed", seconds, failed or f"exit status {rc}"
    return "error", seconds, f"exit status {rc}"


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def make_copy() -> Path:
    """A private copy of src/, tests/ and pyproject.toml (no bytecode caches)."""
    tmp = Path(tempfile.mkdtemp(prefix="vidd-mutation-"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in ("src", "tests"):
        shutil.copytree(ROOT / name, tmp / name, ignore=ignore)
    for name in ("pyproject.toml", "docs"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, tmp / name)
        elif (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, tmp / name, ignore=ignore)
    return tmp


def load_justifications(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    return {str(k): str(v) for k, v in data.items()}


def select(mutants: list[Mutant], cap: int, seed: int) -> list[Mutant]:
    """At most `cap` mutants of a file (0: all), a reproducible random sample kept in file order."""
    if cap <= 0 or len(mutants) <= cap:
        return mutants
    pick = sorted(random.Random(f"{seed}:{mutants[0].file}").sample(range(len(mutants)), cap))
    return [mutants[i] for i in pick]


def run_planted(args) -> int:
    """Plant each bug of PLANTED in the private copy, run its tests, and write planted.md / planted.json."""
    preload()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work, out = make_copy(), Path(args.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n, (what, file, original, planted, tests) in enumerate(PLANTED, 1):
            source = (ROOT / file).read_text()
            if original not in source:
                rows.append({"bug": what, "file": file, "status": "not applicable (the original text moved)"})
                continue
            tests = tests or TESTS[file]
            (work / file).write_text(source.replace(original, planted, 1))
            try:
                status, seconds, failed = run_tests(work, tests, args.max_timeout, logs / f"planted-{n}.log")
            finally:
                (work / file).write_text(source)
            rows.append({"bug": what, "file": file, "original": original, "planted": planted, "status": status,
                         "failed_test": failed, "seconds": round(seconds, 1), "tests": tests})
            print(f"[{n}/{len(PLANTED)}] {status:8s} {what}: {failed}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (out / "planted.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["# The planted bugs of issue 19", "",
             f"Command: `scripts/mutation.sh --planted` (commit {_commit()}, {_dt.date.today().isoformat()}). Each bug "
             "is planted alone in a copy of the tree; killed = at least one of the listed tests fails.", "",
             "| bug | file | result | first failing test |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['bug']} | `{r['file']}` | {r['status']} | `{r.get('failed_test', '')}` |")
    (out / "planted.md").write_text("\n".join(lines) + "\n")
    return 0 if all(r["status"] in ("killed", "timeout") for r in rows) else 1


def run(args) -> int:
    if args.planted:
        return run_planted(args)
    if args.report_only:  # re-render the report (e.g. after adding justifications)
        runs, plan, totals = load_report(Path(args.out))
        write_report(plan, totals, runs, Path(args.out))
        return 0
    files = args.files or list(TESTS)
    plan: list[Mutant] = []
    totals: dict[str, int] = {}
    for f in files:
        every = mutants_of(f)
        totals[f] = len(every)
        plan.extend(select(every, args.max_per_file, args.seed))
    if args.survivors:  # only the earlier report's survivors (after new tests), merged back into it
        args.update = True
        if not (Path(args.out) / "report.json").is_file():
            print("--survivors needs an earlier report.json", file=sys.stderr)
            return 2
        alive = {m.key for m in load_report(Path(args.out))[1] if m.status == "survived"}
        plan = [m for m in plan if m.key in alive]
        files = [f for f in files if any(m.file == f for m in plan)]
    if args.list:
        for m in plan:
            print(f"{m.key}    | {m.source_line}    -> {m.mutated}")
        print(f"{len(plan)} mutants ({sum(totals.values())} before sampling)", file=sys.stderr)
        return 0
    preload()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below when terminated
    work = make_copy()
    out = Path(args.out)
    logs = out / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        # the unmutated tree must pass: it sets each file's time limit
        limits, baseline = {}, {}
        for f in files:
            key = tuple(TESTS[f])
            if key not in baseline:  # files guarded by the same tests share one baseline run
                status, seconds, failed = run_tests(work, TESTS[f], args.max_timeout, logs / "baseline.log")
                if status != "survived":
                    print(f"baseline tests of {f} do not pass on the unmutated tree ({status}: {failed}); "
                          f"see {logs / 'baseline.log'}", file=sys.stderr)
                    return 2
                baseline[key] = seconds
            limits[f] = min(args.max_timeout, max(args.min_timeout, args.timeout_factor * baseline[key]))
            print(f"baseline {f}: {baseline[key]:.1f}s (time limit {limits[f]:.0f}s)", flush=True)
        sources = {f: (ROOT / f).read_text() for f in files}
        trees = {f: ast.parse(sources[f]) for f in files}
        previous = load_report(out) if args.update and (out / "report.json").is_file() else None
        done: list[str] = []
        for n, m in enumerate(plan, 1):
            target = work / m.file
            target.write_text(ast.unparse(apply_mutation(trees[m.file], m.index, m.operator)) + "\n")
            log_path = logs / f"mutant-{n:04d}.log"
            try:
                m.status, m.seconds, m.failed_test = run_tests(work, TESTS[m.file], limits[m.file], log_path)
                if m.status == "timeout":  # slow because of the mutant, or a busy machine: once more, longer
                    m.status, m.seconds, m.failed_test = run_tests(work, TESTS[m.file], 2 * limits[m.file],
                                                                   log_path)
            finally:
                target.write_text(sources[m.file])
            if m.status != "survived":
                log_path.unlink(missing_ok=True)
            print(f"[{n}/{len(plan)}] {m.status:8s} {m.seconds:5.1f}s {m.key}", flush=True)
            if n == len(plan) or plan[n].file != m.file:  # a file is done: save (a killed run keeps it)
                done.append(m.file)
                save(args, plan, totals, done, started, previous)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def save(args, plan: list[Mutant], totals: dict[str, int], done: list[str], started: float, previous) -> None:
    """Write the report of the files done so far (with --update, merged into the earlier report)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    this_run = {"command": ("scripts/mutation.sh " + " ".join(args.argv)).strip(), "commit": _commit(),
                "date": _dt.date.today().isoformat(), "seconds": round(time.time() - started),
                "cpu_seconds": round(usage.ru_utime + usage.ru_stime), "max_per_file": args.max_per_file,
                "seed": args.seed, "files": list(done)}
    plan = [m for m in plan if m.file in done]
    runs = [this_run]
    if args.survivors:  # replace just the rerun survivors' results
        old_runs, old_plan, old_totals = previous
        rerun = {m.key: m for m in plan}
        this_run["survivors_only"] = True
        write_report([rerun.get(m.key, m) for m in old_plan], old_totals, old_runs + runs, Path(args.out))
        return
    if previous is not None:  # keep the other files' earlier results
        old_runs, old_plan, old_totals = previous
        plan = [m for m in old_plan if m.file not in done] + plan
        totals = {**old_totals, **totals}
        runs = [dict(r, files=[f for f in r["files"] if f not in done]) for r in old_runs] + runs
        runs = [r for r in runs if r["files"]]
    write_report(plan, {f: totals[f] for f in {m.file for m in plan}}, runs, Path(args.out))


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        return ""


def _mutant_from(record: dict) -> Mutant:
    """A Mutant from its report.json record (full, or key / status only as older reports kept them)."""
    fields = {f: record[f] for f in Mutant.__dataclass_fields__ if f in record}
    if "file" not in fields:
        file, line, col, operator, description = record["key"].split(":", 4)
        description, _, dup = description.partition("#")
        fields.update(file=file, line=int(line), col=int(col), operator=operator, description=description,
                      index=-1, dup=int(dup or 0))
    return Mutant(**fields)


def load_report(out: Path) -> tuple[list[dict], list[Mutant], dict[str, int]]:
    """(runs, mutants, generated per file) of an existing report.json."""
    data = json.loads((out / "report.json").read_text())
    runs = data.get("runs") or [{k: data.get(k) for k in ("command", "commit", "date", "seconds", "cpu_seconds",
                                                         "max_per_file", "seed")} | {"files": list(data["files"])}]
    survivors = {m["key"]: m for m in data.get("survivors", [])}
    mutants = [_mutant_from(survivors.get(r["key"], {}) | r) for r in data["all"]]
    return runs, mutants, {f: s["generated"] for f, s in data["files"].items()}


def write_report(plan: list[Mutant], totals: dict[str, int], runs: list[dict], out: Path) -> None:
    """report.json and report.md of the mutants `plan` (from one or several runs), with the justifications."""
    out.mkdir(parents=True, exist_ok=True)
    just = load_justifications(out / "justifications.yaml")
    for m in plan:
        m.justification = just.get(m.key, "") if m.status == "survived" else ""
    files = [f for f in TESTS if any(m.file == f for m in plan)]
    per_file = {}
    for f in files:
        mine = [m for m in plan if m.file == f]
        killed = sum(m.status in ("killed", "timeout") for m in mine)
        per_file[f] = {"mutants": len(mine), "generated": totals.get(f, len(mine)), "killed": killed,
                       "survived": sum(m.status == "survived" for m in mine),
                       "errors": sum(m.status == "error" for m in mine),
                       "kill_rate": killed / len(mine) if mine else float("nan")}
    n = len(plan)
    killed = sum(m.status in ("killed", "timeout") for m in plan)
    summary = {"runs": runs, "mutants": n, "killed": killed, "kill_rate": killed / n if n else float("nan"),
               "files": per_file, "tests": {f: TESTS[f] for f in files},
               "survivors": [asdict(m) | {"key": m.key} for m in plan if m.status == "survived"],
               "all": [asdict(m) | {"key": m.key, "seconds": round(m.seconds, 1)} for m in plan]}
    (out / "report.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = ["# Mutation testing report", "", "Produced by:", ""]
    for r in runs:
        only = " (reran the earlier survivors only)" if r.get("survivors_only") else ""
        lines.append(f"- `{r['command']}`{only} (commit {r['commit']}, {r['date']}; {r['seconds'] / 60:.0f} min wall "
                     f"clock, {r['cpu_seconds'] / 60:.1f} min of CPU time in the test runs): "
                     + ", ".join(f"`{f}`" for f in r["files"]))
    lines += ["", f"**Overall: {killed} of {n} mutants killed ({100 * summary['kill_rate']:.1f}%).**", "",
              "| file | mutants | killed | survived | kill rate |", "|---|---|---|---|---|"]
    for f, st in per_file.items():
        sampled = "" if st["generated"] == st["mutants"] else f" (sampled from {st['generated']})"
        lines.append(f"| `{f}` | {st['mutants']}{sampled} | {st['killed']} | {st['survived']} | "
                     f"{100 * st['kill_rate']:.1f}% |")
    survivors = [m for m in plan if m.status == "survived"]
    unreviewed = sum(not m.justification for m in survivors)
    lines += ["", "Killed includes mutants whose tests ran past the time limit twice (timeouts: "
              f"{sum(m.status == 'timeout' for m in plan)}). Survivors not reviewed: {unreviewed}.", "",
              "## Surviving mutants", "",
              "Each entry: file:line:column, the mutation, the original line, the mutant, and why the survivor is "
              "acceptable (from `justifications.yaml`).", ""]
    if not survivors:
        lines.append("None.")
    for m in survivors:
        lines.append(f"- `{m.file}:{m.line}:{m.col}` {m.operator} {m.description}: `{m.source_line[:140]}`  ")
        lines.append(f"  mutant: `{m.mutated}`  ")
        lines.append(f"  {m.justification or '**not reviewed**'}")
    timeouts = [m for m in plan if m.status == "timeout"]
    if timeouts:
        lines += ["", "## Timeouts (counted as killed)", "",
                  "Past the time limit twice (the second time with twice the limit).", ""]
        lines += [f"- `{m.file}:{m.line}:{m.col}` {m.operator} {m.description}: `{m.mutated}`" for m in timeouts]
    errors = [m for m in plan if m.status == "error"]
    if errors:
        lines += ["", "## Errors (not counted as killed)", ""]
        lines += [f"- `{m.key}`: {m.failed_test}" for m in errors]
    lines += ["", "## Tests run per file", ""]
    for f in files:
        lines.append(f"- `{f}`: " + ", ".join(f"`{t}`" for t in TESTS[f]))
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print(f"{killed}/{n} killed ({100 * summary['kill_rate']:.1f}%); report in {out}")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", nargs="*", help="source files to mutate (default: every file in TESTS)")
    p.add_argument("--max-per-file", type=int, default=0, help="sample at most this many mutants per file (0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    p.add_argument("--timeout-factor", type=float, default=4.0, help="time limit: this times the unmutated run "
                   "(a mutant past it runs once more with twice the limit before it counts as a timeout)")
    p.add_argument("--min-timeout", type=float, default=60.0, help="lower bound of a mutant's time limit (s)")
    p.add_argument("--max-timeout", type=float, default=300.0, help="upper bound of a mutant's time limit (s)")
    p.add_argument("--out", default=str(REPORT_DIR), help="report folder")
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("--update", action="store_true", help="rerun only --files and keep the other files' results "
                   "of the existing report")
    p.add_argument("--survivors", action="store_true", help="rerun only the survivors of the existing report "
                   "(e.g. after adding tests) and update their results in it")
    p.add_argument("--planted", action="store_true", help="check the bugs planted in issue 19 (PLANTED) instead")
    p.add_argument("--report-only", action="store_true", help="rewrite report.md / report.json from report.json "
                   "and justifications.yaml without running anything")
    args = p.parse_args(argv)
    args.argv = argv
    unknown = [f for f in (args.files or []) if f not in TESTS]
    if unknown:
        p.error(f"no tests mapped for {unknown}; known: {list(TESTS)}")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
