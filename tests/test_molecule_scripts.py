"""The long molecule runs of issue 16 as scripts (docs/tasks/molecules.md), at SMOKE scale on the fake MOSES of
`support.fake_moses` and a tiny model: scripts/molecule_prior_levers.sh (pretrain variants, model reports, the
lever table) and scripts/parp1_table.sh (VIDD, equal-call baselines, Best-of-32, the table and grids; on
moses-qed, QED standing in for docking). Each runs twice: the second run skips everything the first finished."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rdkit", reason="molecules need the [chem] extra: pip install 'vidd[chem]'")
pytest.importorskip("selfies", reason="molecules need the [chem] extra: pip install 'vidd[chem]'")

from support.fake_moses import write_fake_moses_asset  # noqa: E402

from vidd.chem.molecules import write_smi  # noqa: E402
from vidd.core.seqio import append_scores, read_table, write_table  # noqa: E402
from vidd.diffusion.masked import MaskedDiffusion  # noqa: E402
from vidd.tasks import Task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAKE_VIDD = f"{sys.executable} {ROOT / 'tests' / 'support' / 'fake_moses_cli.py'}"


def run_script(script: str, out: Path, tmp_path: Path, **variables: str) -> str:
    assets = tmp_path / "assets"
    if not assets.is_dir():
        write_fake_moses_asset(assets)
    env = {**os.environ, "SMOKE": "1", "VIDD": FAKE_VIDD, "PYTHON": sys.executable, "VIDD_ASSETS": str(assets),
           "VIDD_CACHE": str(tmp_path / "cache"), "WORKERS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
           **variables}
    done = subprocess.run(["bash", str(ROOT / "scripts" / script), str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def assert_png(path: Path) -> None:
    assert path.read_bytes().startswith(b"\x89PNG"), path


@pytest.mark.slow
def test_molecule_prior_levers_script_trains_reports_and_tabulates(tmp_path):
    out = tmp_path / "levers"
    variants = {"VARIANTS": "committed random-smiles continued"}
    first = run_script("molecule_prior_levers.sh", out, tmp_path, **variants)
    assert "random-smiles: pretraining" in first and "committed: model report at 8 steps" in first
    table = (out / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "variant" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| committed", "| random-smiles", "| continued"]
    assert all(row.count("| - ") == 0 for row in rows[1:]), table  # every number there for the trained ones
    assert "`augment=random-smiles augment_workers=1`" in table and "`init_from=" in table
    assert (out / "random-smiles" / "TRAINED").is_file() and (out / "random-smiles" / "model").is_dir()
    continued = MaskedDiffusion.load(out / "continued" / "model").metadata["config"]
    assert continued["init_from"] == f"{tmp_path / 'assets'}/moses/pretrained"
    assert_png(out / "learning_curves.png")
    second = run_script("molecule_prior_levers.sh", out, tmp_path, **variants)
    assert "random-smiles: trained before, skipped" in second and "pretraining" not in second
    assert (out / "table.md").read_text() == table


@pytest.mark.slow
def test_molecule_prior_levers_script_at_small_scale_has_its_own_recipe_and_variants(tmp_path):
    out = tmp_path / "levers"
    run_script("molecule_prior_levers.sh", out, tmp_path, SCALE="small", VARIANTS="base larger", SEED="1")
    assert MaskedDiffusion.load(out / "base" / "model").metadata["config"]["seed"] == 1
    table = (out / "table.md").read_text()
    assert "| base | `the small recipe (SCALE=small)` |" in table
    assert "| larger | `model.hidden=192 model.layers=3 model.heads=6` |" in table
    with pytest.raises(AssertionError, match="unknown variant continued"):  # the committed network's levers
        run_script("molecule_prior_levers.sh", out, tmp_path, SCALE="small", VARIANTS="continued")
    with pytest.raises(AssertionError, match="SCALE must be full or small, got 'smal'"):
        run_script("molecule_prior_levers.sh", tmp_path / "typo", tmp_path, SCALE="smal")
    assert not (tmp_path / "typo").exists()  # stopped before any work


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lever_table_summarises_each_variant_over_its_seeds_against_the_base_mean(tmp_path):
    """Hand-written reports: base with seeds 0, 10 and 1 (OUT/base, OUT/seed10/base, OUT/seed1/base), longer with
    seed 0 only; the summary lists the seeds in numeric order."""
    lever_table = load_script("molecule_lever_table")
    for name, seed, fcd, qed, bits in (("base", 0, 28.0, 0.40, 1.30), ("seed10/base", 10, 30.0, 0.45, 1.25),
                                       ("seed1/base", 1, 29.0, 0.50, 1.20), ("longer", 0, 26.0, 0.48, 1.10)):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "report-32steps.json").write_text(json.dumps(
            {"samples": 100, "steps": 32, "FCD": fcd, "QED": qed, "valid_nelbo_bits_per_token": bits,
             "provenance": {"config": {"seed": seed}}}))
    table = lever_table.table(tmp_path, ["base", "seed10/base", "seed1/base", "longer"])
    assert "| seed1/base | `?` | 1 | - | - | 100 | 32 | 29.00 |" in table
    assert "| base | 0, 1, 10 | 28.00 / 29.00 / 30.00 (mean 29.00) | - | 0.400 / 0.500 / 0.450 (mean 0.450) | - | " \
           "1.300 / 1.200 / 1.250 (mean 1.250) | - |" in table
    assert "| longer | 0 | 26.00 | -3.00 | 0.480 | +0.030 | 1.100 | -0.150 |" in table
    assert "Over seeds" not in lever_table.table(tmp_path, ["base", "longer"])  # one seed each: no summary
    with pytest.raises(SystemExit, match="no variant folder .*seed2/base"):
        lever_table.table(tmp_path, ["base", "seed2/base"])


@pytest.mark.slow
def test_parp1_table_script_runs_every_method_and_resumes(tmp_path):
    out = tmp_path / "parp1"
    first = run_script("parp1_table.sh", out, tmp_path)
    table = (out / "table.md").read_text()
    for row in ("| pretrained | 8 |", "| VIDD (the quick preset) | 8 |", "| DDPO, VIDD's calls | 8 |",
                "| Best-of-N, VIDD's calls (N = ", "| Best-of-32 (N = 32) | 8 |"):
        assert row in table, table
    for grid in ("pretrained", "vidd", "ddpo", "best-of-n", "best-of-32"):
        assert_png(out / "grids" / f"{grid}.png")
        assert f"(grids/{grid}.png)" in table
    assert "VIDD: the moses-qed quick preset" in first
    calls = int(next(line for line in first.splitlines() if line.startswith("VIDD made")).split()[2])
    assert f"| Best-of-N, VIDD's calls (N = {calls // 8}) |" in table
    second = run_script("parp1_table.sh", out, tmp_path)
    assert "VIDD: finished before, skipped" in second and "ddpo seed 0: done before, skipped" in second
    assert (out / "table.md").read_text() == table


def test_parp1_table_shows_the_molecules_not_docked_and_the_rows_still_missing(tmp_path):
    """The table on hand-written results (no docking): the failures column beside the docking median, which leaves
    them out, the medians' intervals, a Best-of-N row scored from its journal, and a row per part that has not
    run."""
    parp1_table = load_script("parp1_table")
    (tmp_path / "vidd").mkdir()
    (tmp_path / "vidd" / "final_eval.json").write_text(json.dumps(
        {"n": 64, "docking_median": 9.25, "docking_top10": 11.5, "docking_failures": 3, "QED": 0.5, "SA": 3.25,
         "nll_median": 40.0, "validity": 1.0, "uniqueness": 1.0, "novelty": 1.0, "int_div": 0.75, "reward_calls": 700}))
    molecules = {"smiles": ["CCO", "c1ccccc1", "CCN", "CCCl"], "QED": [0.4, 0.4, 0.4, 0.4], "SA": [2.0] * 4,
                 "reward": [1.0, 2.0, 3.0, 4.0]}
    write_table(tmp_path / "vidd" / "samples" / "final.tsv", {**molecules, "eval_reward": [1.0, 9.0, 2.0, math.nan]})
    # a sampling row: its samples file carries the held-out scores, its scores.tsv (docked before) the rest
    cell = tmp_path / "equal-calls" / "runs" / "pretrained" / "seed0"
    cell.mkdir(parents=True)
    (cell / "result.json").write_text(json.dumps({"n": 3, "docking_median": 5.0}))
    write_table(cell / "scores.tsv", {"sequence": ["[C][C][O]", "[C][C][N]", "[C][C][Cl]"], **{
        k: v[:3] for k, v in molecules.items()}})
    write_smi(cell / "samples.smi", ["CCO", "CCN", "CCCl"], {"eval_reward": [4.0, 5.0, 7.5],
                                                              "SELFIES": ["[C][C][O]", "[C][C][N]", "[C][C][Cl]"]})
    # a Best-of-N row: its journal holds every sample's training score, so the table docks nothing
    best = tmp_path / "equal-calls" / "runs" / "best-of-n" / "seed0"
    best.mkdir(parents=True)
    (best / "result.json").write_text(json.dumps({"n": 2, "docking_median": 8.0}))
    write_smi(best / "samples.smi", ["CCO", "CCN"], {"eval_reward": [8.0, 8.5], "SELFIES": ["[C][C][O]", "[C][C][N]"]})
    append_scores(best / "reward_scores.tsv", ["[C][C][O]", "[C][C][C]", "[C][C][N]"], [7.5, 1.0, math.nan])
    task = Task.get("parp1-docking")
    task.table_reward = lambda: pytest.fail("the table docked molecules the journal holds")
    table = parp1_table.table(tmp_path, task)
    best_scores = read_table(best / "scores.tsv")
    assert best_scores["reward"] == ["7.5", "nan"] and best_scores["smiles"] == ["CCO", "CCN"]
    header = next(line for line in table.splitlines() if line.startswith("| method |"))
    assert header.startswith("| method | n | docking median (exh. 8) ↑ | docking top 10% (exh. 8) ↑ | "
                             "not docked (exh. 8) | QED | SA | NLL ↓ |")
    assert header.endswith("| median [95%] | vs pretrained [95%] | vs VIDD [95%] |")
    # the median of the docked molecules with its bootstrap interval, and its difference from the pretrained row's
    # (tests/eval/test_benchstats.py has these values)
    assert "| VIDD (the quick preset) | 64 | 9.25 | 11.5 | 3 | 0.5 | 3.25 | 40 | 1 | 1 | 1 | 0.75 | 700 | " \
           "2 [1, 9] | -3 [-6.5, 5] | - |" in table
    pretrained = next(line for line in table.splitlines() if line.startswith("| pretrained |"))
    assert pretrained.startswith("| pretrained | 3 | 5 | - |") and pretrained.endswith("| 5 [4, 7.5] | - | - |")
    best_row = next(line for line in table.splitlines() if line.startswith("| Best-of-N"))
    # medians 8.25 (Best-of-N), 5 (pretrained) and 2 (VIDD: 1, 9, 2; the failure left out)
    assert re.search(r"\| 8\.25 \[[^]]+\] \| 3\.25 \[[^]]+\] \| 6\.25 \[[^]]+\] \|$", best_row), best_row
    for grid in ("vidd", "pretrained", "best-of-n"):
        assert_png(tmp_path / "grids" / f"{grid}.png")
    for missing in ("DDPO, VIDD's calls", "Best-of-32"):
        assert f"| {missing} | not run yet |" in table
