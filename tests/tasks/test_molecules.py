"""Small molecules: SELFIES tokens, `.smi` files, properties and metrics on known molecules,
rewards and their failure policy, Vina docking, and the molecule tasks end to end on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from support.assets import write_manifest

pytest.importorskip("rdkit", reason="small molecules need the [chem] extra: pip install 'vidd[chem]'")
pytest.importorskip("selfies", reason="small molecules need the [chem] extra: pip install 'vidd[chem]'")

from vidd.core.alphabets import SequenceError  # noqa: E402
from vidd.chem.metrics import molecule_metrics  # noqa: E402
from vidd.chem.molecules import (  # noqa: E402
    PAD, MoleculeError, canonical_smiles, mol_from_smiles, read_smi, read_smi_selfies, selfies_alphabet,
    selfies_to_smiles, smiles_to_selfies, write_smi,
)
from vidd.chem.properties import internal_diversity, logp, molecular_weight, property_table, qed, sa_score  # noqa: E402
from vidd.rewards.chem import DrugLikenessReward, QEDReward, SAReward  # noqa: E402
from vidd.rewards.counted import CountedReward, RewardPolicy  # noqa: E402

DRUGS = {
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
    "caffeine": "Cn1c(=O)c2c(ncn2C)n(C)c1=O",
    "ibuprofen": "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
    "olaparib": "O=C(c1cc(Cc2n[nH]c(=O)c3ccccc23)ccc1F)N1CCN(C(=O)C2CC2)CC1",
    "haloperidol": "O=C(CCCN1CCC(O)(c2ccc(Cl)cc2)CC1)c1ccc(F)cc1",
    "benzamide": "NC(=O)c1ccccc1",
}


@pytest.fixture(scope="module")
def alphabet():
    return selfies_alphabet([smiles_to_selfies(s) for s in DRUGS.values()])


def test_selfies_round_trip_through_the_alphabet(alphabet):
    selfies = [smiles_to_selfies(s) for s in DRUGS.values()]
    tokens = alphabet.encode(selfies, 56)
    assert tokens.shape == (len(DRUGS), 56)
    assert (tokens[:, -1] == alphabet.letters.index(PAD)).all()  # padded at the end
    decoded = alphabet.decode(tokens)
    assert decoded == selfies  # pads stripped
    assert [selfies_to_smiles(s) for s in decoded] == [canonical_smiles(s) for s in DRUGS.values()]


def test_the_all_padding_string_is_the_empty_molecule(alphabet):
    pads = torch.full((1, 10), alphabet.letters.index(PAD))
    assert alphabet.decode(pads) == [""]
    assert selfies_to_smiles("") is None


def test_unparsable_smiles_are_clear_errors(tmp_path):
    with pytest.raises(MoleculeError, match=r"input: RDKit cannot parse the SMILES 'C1CC'"):
        smiles_to_selfies("C1CC", where="input")
    path = tmp_path / "bad.smi"
    path.write_text("SMILES\tname\nCCO\tethanol\nc1ccccc1\tbenzene\nC(C\tbroken\n")
    with pytest.raises(MoleculeError, match=r"bad.smi: line 4: RDKit cannot parse the SMILES 'C\(C'"):
        read_smi(path)
    empty = tmp_path / "empty.smi"
    empty.write_text("SMILES\n")
    with pytest.raises(MoleculeError, match="no molecules"):
        read_smi(empty)
    with pytest.raises(MoleculeError, match="file not found"):
        read_smi(tmp_path / "missing.smi")


def test_unknown_tokens_and_too_long_molecules_are_clear_errors(alphabet):
    with pytest.raises(SequenceError, match=r"sequence 1: token '\[Si\]' at position 2 is not in the SELFIES"):
        alphabet.encode(["[C][Si][C]"], 56)
    long = "[C]" * 57
    with pytest.raises(SequenceError, match="57 tokens, more than the 56 the model holds"):
        alphabet.encode([long], 56)


def test_smi_files_round_trip_the_exact_selfies(tmp_path, alphabet):
    selfies = [smiles_to_selfies(DRUGS["aspirin"]), "", smiles_to_selfies(DRUGS["caffeine"])]
    smiles = [selfies_to_smiles(s) for s in selfies]
    path = tmp_path / "s.smi"
    write_smi(path, smiles, {"QED": [0.5, float("nan"), 0.25], "SELFIES": [s or PAD for s in selfies]})
    lines = path.read_text().splitlines()
    assert lines[0] == "SMILES\tQED\tSELFIES" and lines[2].startswith("*\tnan")
    assert [alphabet.join(alphabet.split(s)) for s in read_smi_selfies(path)] == selfies
    plain = tmp_path / "plain.smi"
    plain.write_text("CCO ethanol\nc1ccccc1\n")
    assert read_smi_selfies(plain) == ["[C][C][O]", "[C][=C][C][=C][C][=C][Ring1][=Branch1]"]


def test_properties_of_known_molecules():
    aspirin, benzene = mol_from_smiles(DRUGS["aspirin"]), mol_from_smiles("c1ccccc1")
    assert qed(aspirin) == pytest.approx(0.5501, abs=1e-3)  # Bickerton et al.'s reported value: 0.55
    assert sa_score(aspirin) == pytest.approx(1.58, abs=0.02)
    assert sa_score(benzene) == pytest.approx(1.0, abs=1e-6)
    assert molecular_weight(aspirin) == pytest.approx(180.16, abs=0.01)
    assert logp(benzene) == pytest.approx(1.687, abs=1e-3)
    table = property_table([aspirin, benzene])
    assert set(table) == {"QED", "SA", "MW", "logP"} and table["MW"].shape == (2,)


def test_internal_diversity_bounds():
    ethanol, benzene = mol_from_smiles("CCO"), mol_from_smiles("c1ccccc1")
    assert internal_diversity([ethanol] * 4) == pytest.approx(0.0)
    assert internal_diversity([ethanol, benzene]) == pytest.approx(1.0)  # no shared Morgan bits
    assert np.isnan(internal_diversity([ethanol]))


def test_molecule_metrics_on_known_sets():
    selfies = [smiles_to_selfies(DRUGS[k]) for k in ("aspirin", "aspirin", "caffeine", "ibuprofen")] + [""]
    reference_smiles = tuple(canonical_smiles(DRUGS[k]) for k in ("aspirin", "caffeine", "ibuprofen"))
    reference = (reference_smiles, property_table([mol_from_smiles(s) for s in reference_smiles]))
    m = molecule_metrics(selfies, reference, training=frozenset({canonical_smiles(DRUGS["caffeine"])}))
    assert m["n"] == 5 and m["validity"] == pytest.approx(0.8)
    assert m["uniqueness"] == pytest.approx(3 / 4)
    assert m["novelty"] == pytest.approx(2 / 3)  # caffeine is in the training set
    assert 0 < m["int_div"] < 1
    assert m["QED"] == pytest.approx(np.mean([qed(mol_from_smiles(DRUGS[k])) for k in
                                              ("aspirin", "aspirin", "caffeine", "ibuprofen")]))
    same = molecule_metrics([smiles_to_selfies(s) for s in reference_smiles], reference)
    assert all(same[f"W1_{p}"] == pytest.approx(0.0, abs=1e-9) for p in ("QED", "SA", "MW", "logP"))
    assert "novelty" not in same


def test_molecule_rewards_give_nan_for_the_empty_molecule_and_the_policy_counts_it():
    seqs = [smiles_to_selfies(DRUGS["aspirin"]), ""]
    q = QEDReward()(seqs)
    assert q[0] == pytest.approx(0.5501, abs=1e-3) and np.isnan(q[1])
    assert SAReward()(seqs[:1])[0] == pytest.approx((10 - 1.58) / 9, abs=0.01)
    combo = DrugLikenessReward(qed_weight=1.0, sa_weight=0.5)(seqs[:1])[0]
    assert combo == pytest.approx(q[0] + 0.5 * (10 - 1.58) / 9, abs=0.01)
    counted = CountedReward(QEDReward(), RewardPolicy(on_failure="penalty", penalty=0.0))
    assert counted(seqs)[1] == 0.0 and counted.failures == 1
    from vidd.rewards.counted import RewardFailure

    with pytest.raises(RewardFailure):
        CountedReward(QEDReward())(seqs)  # default policy: stop with an error


# ------------------------------------------------------------------------------------ docking

def test_dockstring_targets_and_boxes():
    pytest.importorskip("dockstring", reason="docking needs the [chem] extra")
    from vidd.core.config import ConfigError
    from vidd.rewards.chem import DockingConfig, DockingReward, dockstring_targets, read_box

    targets = dockstring_targets()
    assert len(targets) == 58 and {"PARP1", "DRD2"} <= set(targets)
    center, size = read_box(targets["PARP1"][1])
    assert center == pytest.approx([26.835, 11.332, 27.744]) and size == [30.0, 30.0, 30.0]
    with pytest.raises(ConfigError, match="unknown target 'NOPE'"):
        DockingReward(DockingConfig(target="NOPE"))


@pytest.mark.slow
def test_docking_a_small_ligand_to_parp1():
    pytest.importorskip("vina", reason="docking needs the [chem] extra")
    pytest.importorskip("meeko", reason="docking needs the [chem] extra")
    from vidd.rewards.chem import DockingConfig, DockingReward

    reward = DockingReward(DockingConfig(target="PARP1", exhaustiveness=1, max_heavy_atoms=20))
    values = reward([smiles_to_selfies(DRUGS["benzamide"]), smiles_to_selfies(DRUGS["olaparib"]), ""])
    # benzamide is PARP1's classic nicotinamide-pocket fragment: a real, favourable Vina score
    assert 3.0 < values[0] < 12.0
    assert np.isnan(values[1])  # over max_heavy_atoms: not docked, NaN for the failure policy
    assert np.isnan(values[2])  # the empty molecule


# ------------------------------------------------------------------------- tasks end to end

@pytest.fixture
def tiny_moses(tmp_path, monkeypatch, alphabet):
    """A tiny random SELFIES model as the `moses` asset, and small reference/training sets."""
    from vidd.diffusion.pretrain import ModelConfig
    from vidd.tasks.molecules import MoleculeTask

    folder = tmp_path / "assets" / "moses"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    ModelConfig(backbone="transformer", hidden=16, layers=1, heads=2).build(alphabet, 56).save_pretrained(
        folder / "pretrained")
    write_manifest(tmp_path / "assets", "moses/pretrained")
    monkeypatch.setenv("VIDD_ASSETS", str(tmp_path / "assets"))
    ref_smiles = tuple(canonical_smiles(s) for s in DRUGS.values())
    reference = (ref_smiles, property_table([mol_from_smiles(s) for s in ref_smiles]))
    monkeypatch.setattr(MoleculeTask, "reference", property(lambda self: reference))
    monkeypatch.setattr(MoleculeTask, "training_set", property(lambda self: frozenset(ref_smiles[:2])))
    return folder


def test_moses_qed_task_samples_and_evaluation(tiny_moses, tmp_path):
    from vidd.tasks import Task

    task = Task.get("moses-qed")
    assert task.alphabet.pad == PAD and task.length == 56
    model = task.pretrained_model()
    seqs = task.alphabet.decode(model.sample(12, 8, torch.Generator().manual_seed(0)))
    path = tmp_path / "samples.smi"
    task.write_samples(path, seqs)
    assert task.read_samples(path) == seqs
    m = task.evaluate(seqs)
    for key in ("qed_median", "validity", "uniqueness", "novelty", "int_div", "QED", "SA", "W1_QED", "nll_median"):
        assert key in m, key
    assert m["nll_median"] > 0
    assert 0.0 <= task.diversity(seqs) <= 1.0


def test_cli_finetune_moses_qed_smoke(tiny_moses, tmp_path):
    from typer.testing import CliRunner

    from vidd.cli import app

    run = tmp_path / "run"
    args = ["finetune", "moses-qed", "--preset", "quick", "--out", str(run), "--set", "iterations=2",
            "--set", "eval_every=1", "--set", "eval_samples=8", "--set", "final_samples=8",
            "--set", "batch_size=4", "--set", "steps=8", "--set", "method.timesteps=2"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    final = json.loads((run / "final_eval.json").read_text())
    assert {"qed_median", "validity", "int_div", "nll_median", "reward_calls"} <= set(final)
    smi = (run / "samples" / "final.smi").read_text()
    assert smi.startswith("SMILES\tQED\tSA\treward\teval_reward\tlog_likelihood\tSELFIES")
    header, *table = [line.split("\t") for line in (run / "samples" / "final.tsv").read_text().splitlines()]
    assert header == ["sequence", "smiles", "QED", "SA", "reward", "eval_reward", "log_likelihood"]
    from vidd.tasks import Task

    assert [row[0] for row in table] == Task.get("moses-qed").read_samples(run / "samples" / "final.smi")
    for row in table:  # QED is the reward here: the same number (or no molecule: NaN, and the penalty 0)
        smiles, qed_value, reward, evaluation = row[1], float(row[2]), float(row[4]), float(row[5])
        assert (qed_value, reward) == ((pytest.approx(evaluation), evaluation) if smiles != "*" else
                                       (pytest.approx(np.nan, nan_ok=True), 0.0))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    from vidd.tasks import Task

    task = Task.get("moses-qed")
    for r in rows:  # the logged diversity is the task's (Tanimoto) diversity of the samples written for it
        seqs = task.read_samples(run / "samples" / f"iter_{r['iteration']:05d}.smi")
        assert len(seqs) == 8 and r["eval_diversity"] == pytest.approx(task.diversity(seqs))
    # the report shows the best molecules and the distributions against pretrained samples drawn for it
    report = (run / "report.html").read_text()
    for name in ("top_designs.png", "distributions.png"):
        assert_png(run / "figures" / name)
        assert f"<img src='figures/{name}'" in report, name
    prior = (run / "samples" / "pretrained.tsv").read_text().splitlines()
    assert prior[0] == "sequence\tsmiles\tQED\tSA\treward" and len(prior) == 1 + 64


def assert_png(path):
    from PIL import Image

    assert path.read_bytes().startswith(b"\x89PNG"), path
    with Image.open(path) as image:
        image.verify()  # a whole, readable PNG
        assert image.size[0] > 100 and image.size[1] > 100


def test_best_distinct_ranks_by_score_once_per_molecule():
    from vidd.tasks.molecules import best_distinct

    smiles = ["CCO", "*", "CCN", "CCO", "c1ccccc1", "CCC", "CCCl"]
    scores = np.array([0.5, 9.0, 0.7, 0.5, np.nan, 0.7, 0.1])
    assert best_distinct(smiles, scores, 3) == [2, 5, 0]  # no molecule and NaN left out; ties: first listed
    assert best_distinct(smiles, scores, 12) == [2, 5, 0, 6]


@pytest.fixture
def finished_run(tiny_moses, tmp_path):
    """A run folder of moses-qed whose final table holds 20 known molecules with made-up rewards (scores in
    reverse order of listing, a duplicate and an empty molecule)."""
    from vidd.core.runfolder import RunFolder
    from vidd.tasks import Task

    smiles = [canonical_smiles("C" * n + "O") for n in range(1, 19)] + [canonical_smiles("CCO"), "*"]
    reward = list(np.linspace(0.1, 0.9, 18)) + [0.95, 0.0]  # ethanol twice: listed 2nd and 19th
    folder = RunFolder(tmp_path / "run")
    with folder.lock():
        folder.create({"steps": 8, "task": {}})
    mols = [mol_from_smiles(s) if s != "*" else None for s in smiles]
    selfies = [smiles_to_selfies(s) if s != "*" else "" for s in smiles]
    folder.write_final_table({"sequence": selfies, "smiles": smiles, "QED": [qed(m) if m else np.nan for m in mols],
                              "SA": [sa_score(m) if m else np.nan for m in mols], "reward": reward,
                              "eval_reward": reward, "log_likelihood": [-30.0] * 20})
    Task.get("moses-qed").write_samples(folder.samples_file("final", ".smi"), selfies)
    return folder


def test_report_figures_grid_the_twelve_best_by_training_reward(finished_run, monkeypatch):
    import vidd.tasks.molecules as molecules
    from vidd.tasks import Task

    drawn = {}
    real = molecules.molecule_grid
    monkeypatch.setattr(molecules, "molecule_grid", lambda smiles, legends, path: (
        drawn.update(smiles=smiles, legends=legends), real(smiles, legends, path)))
    task = Task.get("moses-qed", settings={"report_prior_samples": 8})
    figures = task.report_figures(finished_run, steps=8)
    assert [f.image for f in figures] == ["figures/top_designs.png", "figures/distributions.png"]
    for f in figures:
        assert_png(finished_run.path / f.image)
    carbons = [s.count("C") for s in drawn["smiles"]]
    assert drawn["smiles"][0] == "CCO" and carbons[1:] == list(range(18, 7, -1))  # by reward; ethanol once
    assert drawn["legends"][0].startswith("#1 reward 0.95\nQED ")
    assert "8 samples of the pretrained model" in figures[1].note


def test_report_redraws_the_prior_only_when_its_size_changes(finished_run):
    from typer.testing import CliRunner

    from vidd.cli import app

    (finished_run.path / "metrics.jsonl").write_text('{"iteration": 1}\n')
    prior = finished_run.prior_table_file
    r = CliRunner().invoke(app, ["report", str(finished_run.path), "--task", "moses-qed",
                                 "--task-set", "report_prior_samples=4"])
    assert r.exit_code == 0, r.output
    first = prior.read_text()
    assert len(first.splitlines()) == 1 + 4
    mtime = prior.stat().st_mtime_ns  # the same size again: kept, not drawn again
    r = CliRunner().invoke(app, ["report", str(finished_run.path), "--task", "moses-qed",
                                 "--task-set", "report_prior_samples=4"])
    assert r.exit_code == 0 and prior.stat().st_mtime_ns == mtime
    r = CliRunner().invoke(app, ["report", str(finished_run.path), "--task", "moses-qed",
                                 "--task-set", "report_prior_samples=0"])
    assert r.exit_code == 0, r.output
    figures = json.loads(finished_run.report_figures_file.read_text())
    assert "no pretrained samples" in figures[1]["note"]
    r = CliRunner().invoke(app, ["report", str(finished_run.path), "--task", "moses-qed",
                                 "--task-set", "report_prior_samples=-1"])
    assert r.exit_code == 2 and "report_prior_samples: must be >= 0" in r.output


def test_wrong_alphabet_samples_are_rejected(tiny_moses, tmp_path):
    from vidd.tasks import Task

    path = tmp_path / "si.smi"
    path.write_text("C[Si](C)(C)C\n")
    with pytest.raises(SequenceError, match=r"si.smi: molecule 1: token '\[Si\]'"):
        Task.get("moses-qed").read_samples(path)


def test_docking_task_defaults_put_the_reward_on_a_process_pool():
    from vidd.run import finetune_config
    from vidd.tasks.molecules import PARP1Docking

    config = finetune_config(PARP1Docking(), "quick")
    assert config.reward.executor.kind == "process" and config.reward.executor.workers == 2
    assert config.reward.on_failure == "penalty" and config.overlap and config.accumulation == 2
    report_reward = PARP1Docking().table_reward()  # the report's prior samples dock on a pool too (not run here)
    assert report_reward.config.kind == "process" and report_reward.executor.capacity >= 1
    report_reward.close()


def test_committed_moses_model_samples_valid_diverse_molecules():
    """The embedded default: a SELFIES model whose samples decode to distinct, mostly drug-like molecules."""
    from vidd.tasks import Task, assets_dir

    if not (assets_dir() / "moses" / "pretrained").is_dir():
        pytest.skip("the committed moses asset is not in this checkout")
    task = Task.get("moses-qed")
    model = task.pretrained_model()
    assert task.alphabet.pad == PAD and model.length == 56
    seqs = task.alphabet.decode(model.sample(24, 32, torch.Generator().manual_seed(0)))
    m = molecule_metrics(seqs)
    assert m["validity"] >= 0.9 and m["uniqueness"] == 1.0
    assert 0.6 < m["QED"] < 0.95  # MOSES molecules: mean QED about 0.8


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    from vidd.chem.metrics import frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, (20000, 3))
    b = rng.normal([1.0, 0.0, -2.0], [2.0, 1.0, 0.5], (20000, 3))
    # |mu_a - mu_b|^2 + sum (sd_a - sd_b)^2 for diagonal covariances
    assert frechet_distance(a, b) == pytest.approx(5.0 + 1.0 + 0.25, rel=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_fcd_is_small_for_a_set_against_itself_and_larger_against_other_molecules():
    pytest.importorskip("fcd", reason="FCD needs the [chem] extra")
    from vidd.chem.metrics import fcd

    drugs = [canonical_smiles(s) for s in DRUGS.values()]
    alkanes = ["C" * n for n in range(2, 9)] + ["CC(C)" * n + "C" for n in range(1, 5)]
    assert fcd(drugs, drugs) == pytest.approx(0.0, abs=1e-3)
    assert fcd(drugs, alkanes) > 10.0


def test_a_missing_chemistry_package_names_the_extra():
    from vidd.chem.molecules import require
    from vidd.core.extras import MissingExtra

    with pytest.raises(MissingExtra, match=r"small molecules needs the Python package 'no_such_chem_pkg': pip install 'vidd\[chem\]'"):
        require("no_such_chem_pkg")
