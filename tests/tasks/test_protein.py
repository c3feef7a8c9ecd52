"""`protein-ss`: task settings (validated, recorded in the run config, carried to reward workers), the errors
for missing weights, the ESMFold secondary-structure reward, and a real fine-tuning run from the CLI, all on
tiny randomly initialised models of the real classes saved in the real formats (tests/support/tiny_models.py):
an ESM-2 prior and an ESMFold folding model (Hugging Face folders), and an EvoDiff checkpoint when evodiff
is installed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

pytest.importorskip("transformers", reason="protein-ss needs the [protein] extra: pip install 'vidd[protein]'")
pytest.importorskip("pydssp", reason="protein-ss needs the [structure] extra: pip install 'vidd[structure]'")
pytest.importorskip("biotite", reason="protein-ss needs the [structure] extra: pip install 'vidd[structure]'")

from support.tiny_models import save_tiny_esm2, save_tiny_esmfold  # noqa: E402

from vidd.cli import app  # noqa: E402
from vidd.core.alphabets import PROTEIN  # noqa: E402
from vidd.core.config import ConfigError, describe  # noqa: E402
from vidd.core.errors import UserError  # noqa: E402
from vidd.core.seqio import read_fasta
from vidd.core.weights import WeightsMissing  # noqa: E402
from vidd.diffusion.loaders import evodiff_oadm_arguments  # noqa: E402
from vidd.diffusion.order_agnostic import OrderAgnosticDiffusion  # noqa: E402
from vidd.rewards import esmfold  # noqa: E402
from vidd.rewards.esmfold import Fold, SecondaryStructureReward, load_esmfold  # noqa: E402
from vidd.rewards.structure import (  # noqa: E402
    read_backbone,
    secondary_structure,
    structure_fraction,
)
from vidd.tasks import Task  # noqa: E402

UBIQUITIN_PDB = Path(__file__).parents[1] / "fixtures" / "structures" / "1ubi.pdb"
ENV = ("VIDD_ESMFOLD_DIR", "VIDD_ESM2_DIR", "VIDD_EVODIFF_OADM")


@pytest.fixture(autouse=True)
def no_weights_in_the_environment(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def tiny_esmfold(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("esmfold_v1")
    save_tiny_esmfold(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_esm2(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("esm2")
    save_tiny_esm2(folder)
    return folder


def esm2_settings(folder: Path, length: int = 12, **extra) -> dict:
    return {"prior": "esm2", "prior_path": str(folder), "length": length, **extra}


# ------------------------------------------------------------------ settings
def test_settings_are_validated_and_fixed_per_task_object():
    task = Task.get("protein-ss")
    assert (task.length, task.settings.structure, task.settings.assigner) == (100, "strand", "psea")
    helix = task.configured(settings={"structure": "helix", "length": 40})
    assert (helix.length, helix.settings.structure, task.length) == (40, "helix", 100)
    assert helix.configured(settings={"assigner": "dssp"}).settings.structure == "helix"  # the others stay
    with pytest.raises(ConfigError, match=r"task.length: must be >= 1, got 0"):
        Task.get("protein-ss", settings={"length": 0})
    with pytest.raises(ConfigError, match=r"task.structure: 'coil' is not one of the allowed values "
                                          r"\['strand', 'helix'\]"):
        Task.get("protein-ss", settings={"structure": "coil"})
    with pytest.raises(ConfigError, match=r"task: unknown field\(s\) \['lenght'\]"):
        Task.get("protein-ss", settings={"lenght": 10})
    with pytest.raises(ConfigError, match="task 'dhs-hepg2' has no settings"):
        Task.get("dhs-hepg2", settings={"length": 10})


def test_docs_list_every_setting_with_its_default():
    doc = (Path(__file__).parents[2] / "docs" / "tasks" / "protein.md").read_text()
    for name in ("protein-ss", "protein-binder"):
        rows = describe(Task.registry[name].Settings, "task.")
        table = "\n".join(f"| `{field}` | `{default}` | {text} |" for field, default, text in rows)
        assert table in doc, f"docs/tasks/protein.md: the settings table of {name} is stale"


def test_the_reward_factory_carries_the_settings_to_a_worker(tiny_esmfold):
    task = Task.get("protein-ss", settings={"structure": "helix", "assigner": "dssp",
                                            "esmfold_path": str(tiny_esmfold)})
    reward = task.training_reward_factory()()  # what an executor's worker builds
    assert (reward.structure, reward.assigner, reward.esmfold_path) == ("helix", "dssp", str(tiny_esmfold))
    assert reward.name == "helix_fraction_dssp"


# ------------------------------------------------------------------ missing weights
def test_missing_weights_name_the_variable_and_the_download_steps(tmp_path, tiny_esm2):
    with pytest.raises(WeightsMissing, match=r"EvoDiff OA-DM 38M.*not configured.*VIDD_EVODIFF_OADM.*"
                                             r"zenodo.org/record/8045076/files/oaar-38M.tar"):
        Task.get("protein-ss").pretrained_model()
    with pytest.raises(WeightsMissing, match=r"ESM-2.*no config.json.*hf download facebook/esm2_t33_650M_UR50D.*"
                                             r"VIDD_ESM2_DIR=/path/to/it \(or --set task.prior_path=/path/to/it\)"):
        Task.get("protein-ss", settings=esm2_settings(tmp_path)).pretrained_model()
    with pytest.raises(WeightsMissing, match=r"ESMFold v1.*hf download facebook/esmfold_v1 --local-dir esmfold_v1"
                                             r".*VIDD_ESMFOLD_DIR=/path/to/it"):
        Task.get("protein-ss").training_reward()  # checked when the reward is made, before any work
    with pytest.raises(WeightsMissing, match=r"ESMFold v1 .* weights not configured"):
        SecondaryStructureReward()(["ACDEFGHIKL"])  # a reward made without the task: at the first call
    with pytest.raises(Exception, match="not an ESMFold model"):  # an ESM-2 folder is no ESMFold
        load_esmfold(str(tiny_esm2), "cpu")


def test_the_cli_reports_missing_weights_in_one_line(tmp_path):
    r = CliRunner().invoke(app, ["finetune", "protein-ss", "--out", str(tmp_path / "run"), "--set", "iterations=1"])
    assert r.exit_code == 2
    # the prior is checked first (build_run loads the model before anything else); ESMFold's error has the same form
    assert "EvoDiff OA-DM 38M checkpoint (oaar-38M.tar) weights not configured" in r.output and "VIDD_EVODIFF_OADM" in r.output
    assert "Traceback" not in r.output


# ------------------------------------------------------------------ the ESMFold reward
def test_esmfold_folds_loads_once_and_caches_each_sequence(tiny_esmfold, monkeypatch):
    monkeypatch.setenv("VIDD_ESMFOLD_DIR", str(tiny_esmfold))
    esmfold._load_esmfold.cache_clear()
    reward = SecondaryStructureReward("strand", "dssp", device="cpu", batch_size=2)
    seqs = ["MKTAYIAKQRQISFVKSHFSRQ", "GSHMLEDPVDAFQLGPAAVLVA", "MKTAYIAKQRQISFVKSHFSRQ"]
    values = reward(seqs)
    assert values.shape == (3,) and ((0 <= values) & (values <= 1)).all() and values[0] == values[2]
    model = load_esmfold(None, "cpu")
    assert esmfold._load_esmfold.cache_info().misses == 1  # one load per process, whoever asks
    assert model.esm.embeddings.word_embeddings.weight.dtype == torch.float32  # the fp16 ESM-2 runs in fp32 on CPU
    with torch.no_grad():
        direct = model.infer([seqs[1]])
    fold = reward.folder.fold([seqs[1]])[0]
    assert fold.backbone.shape == (22, 4, 3)
    np.testing.assert_allclose(fold.backbone, direct["positions"][-1][0, :, :4].double().numpy(), atol=1e-5)
    plddt = direct["plddt"][0].double()
    exists = direct["atom37_atom_exists"][0].double()
    assert fold.plddt == pytest.approx(float((plddt * exists).sum() / exists.sum()))
    assert 0 < fold.plddt < 1
    calls = []
    monkeypatch.setattr(reward.folder.cache, "compute", lambda batch: calls.append(batch) or [])
    reward(seqs)  # every sequence cached: ESMFold is not called again
    assert calls == []


def test_the_reward_counts_the_assigned_residues_of_the_fold():
    """A fold placed in the cache (ubiquitin's real backbone, PDB 1UBI) is scored without ESMFold: the reward
    is the fraction of its residues in the chosen structure by the chosen assigner."""
    sequence, backbone = read_backbone(UBIQUITIN_PDB, "A")
    for structure in ("strand", "helix"):
        for assigner in ("dssp", "psea"):
            reward = SecondaryStructureReward(structure, assigner)
            reward.folder.cache.results[sequence] = Fold(sequence, backbone, 0.9)
            expected = structure_fraction(secondary_structure(backbone, sequence, assigner), structure)
            assert reward([sequence])[0] == pytest.approx(expected)
            assert (0.3 <= expected <= 0.45) if structure == "strand" else (0.12 <= expected <= 0.25)


# ------------------------------------------------------------------ the prior
def test_the_esm2_prior_designs_every_position_at_the_chosen_length(tiny_esm2):
    model = Task.get("protein-ss", settings=esm2_settings(tiny_esm2, length=9)).pretrained_model()
    assert isinstance(model, OrderAgnosticDiffusion) and model.length == 9 and bool(model.designable.all())
    seqs = PROTEIN.decode(model.sample(3, 3, torch.Generator().manual_seed(0)))
    assert all(len(s) == 9 and set(s) <= set(PROTEIN.letters) for s in seqs)


def test_the_evodiff_prior_from_a_tiny_checkpoint_in_evodiff_format(tmp_path):
    evodiff_model = pytest.importorskip("evodiff.model", reason="EvoDiff is installed by hand (docs/tasks/antibody.md)")
    config = {"d_embed": 8, "d_model": 16, "n_layers": 2, "kernel_size": 3, "r": 4, "slim": True, "activation": "gelu"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    net = evodiff_model.ByteNetLMTime(**evodiff_oadm_arguments(config))
    checkpoint = tmp_path / "oaar-tiny.tar"  # evodiff's format: DDP-prefixed state dict under model_state_dict
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, checkpoint)
    settings = {"prior_path": str(checkpoint), "prior_config": str(tmp_path / "config.json"), "length": 8}
    model = Task.get("protein-ss", settings=settings).pretrained_model()
    assert model.length == 8 and model.backbone.config.architecture == "evodiff-bytenet"
    seqs = PROTEIN.decode(model.sample(2, 2, torch.Generator().manual_seed(0)))
    assert all(len(s) == 8 for s in seqs)


# ------------------------------------------------------------------ a real run
def test_finetune_protein_ss_from_the_cli_on_tiny_models(tiny_esm2, tiny_esmfold, tmp_path, monkeypatch):
    """One VIDD iteration of the quick preset on the CPU: the ESM-2 prior, the reward on a serial executor
    (built in the 'worker' from the task's factory, settings included), the final evaluation, then a resume
    that reads the task settings from the run's config and `vidd evaluate` with --task-set."""
    monkeypatch.setenv("VIDD_ESMFOLD_DIR", str(tiny_esmfold))
    run = tmp_path / "run"
    settings = ["--set", f"task.prior_path={tiny_esm2}", "--set", "task.prior=esm2", "--set", "task.length=12",
                "--set", "task.fold_device=cpu", "--set", "task.assigner=dssp"]
    small = ["--set", "iterations=1", "--set", "steps=3", "--set", "batch_size=3", "--set", "eval_every=1",
             "--set", "eval_samples=2", "--set", "final_samples=4", "--set", "likelihood_samples=2",
             "--set", "reward.executor.kind=serial"]
    r = CliRunner().invoke(app, ["finetune", "protein-ss", "--preset", "quick", "--out", str(run), *settings, *small])
    assert r.exit_code == 0, r.output
    recorded = yaml.safe_load((run / "config.yaml").read_text())["task"]
    assert recorded == {"length": 12, "prior": "esm2", "prior_path": str(tiny_esm2), "fold_device": "cpu",
                        "assigner": "dssp"}
    final = json.loads((run / "final_eval.json").read_text())
    assert final["n"] == 4 and 0 <= final["reward_median"] <= 1 and 0 < final["plddt_mean"] < 1
    assert {"strand_fraction_dssp", "strand_fraction_psea", "helix_fraction_dssp", "helix_fraction_psea",
            "log_likelihood_median", "diversity", "uniqueness"} <= set(final)
    assert final["reward_mean"] == pytest.approx(final["strand_fraction_dssp"])
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["iteration"] == 1 and np.isfinite(metrics[0]["loss"])
    samples = [s for _, s in read_fasta(run / "samples" / "final.fasta")]
    assert len(samples) == 4 and all(len(s) == 12 for s in samples)

    r = CliRunner().invoke(app, ["finetune", "protein-ss", "--resume", str(run), "--set", "iterations=2"])
    assert r.exit_code == 0, r.output
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2

    task_set = ["--task-set", f"prior_path={tiny_esm2}", "--task-set", "prior=esm2", "--task-set", "length=12",
                "--task-set", "fold_device=cpu"]
    r = CliRunner().invoke(app, ["evaluate", "--task", "protein-ss", "--samples", str(run / "samples" / "final.fasta"),
                                 "--likelihood-samples", "2", *task_set])
    assert r.exit_code == 0, r.output
    assert "plddt_mean" in r.output and "strand_fraction_psea" in r.output


# ------------------------------------------------------------------ protein-binder
def test_protein_binder_needs_a_predictor_and_a_target(tiny_esm2):
    task = Task.get("protein-binder", settings=esm2_settings(tiny_esm2))
    assert task.length == 12 and dict(task.reward_weights) == {"iptm": 1.0, "plddt": 0.1, "compactness": 0.02}
    with pytest.raises(UserError, match="no structure predictor; set task.predictor"):
        task.training_reward()
    with pytest.raises(UserError, match="no target; set task.target_pdb"):
        task.configured(settings={"predictor": "support.fake_predictor:FakePredictor"}).training_reward()


def test_finetune_protein_binder_from_the_cli_with_a_fake_predictor(tiny_esm2, tmp_path):
    """One iteration against the fake predictor (tests/support/fake_predictor.py; ubiquitin stands in for the
    target), the compactness term switched off through reward.terms."""
    run = tmp_path / "run"
    settings = ["--set", f"task.prior_path={tiny_esm2}", "--set", "task.prior=esm2", "--set", "task.length=10",
                "--set", "task.predictor=support.fake_predictor:FakePredictor",
                "--set", f"task.target_pdb={UBIQUITIN_PDB}", "--set", "reward.terms={iptm: 1, plddt: 0.1}"]
    small = ["--set", "iterations=1", "--set", "steps=3", "--set", "batch_size=3", "--set", "eval_every=0",
             "--set", "final_samples=4", "--set", "likelihood_samples=2", "--set", "reward.executor.kind=serial"]
    r = CliRunner().invoke(app, ["finetune", "protein-binder", "--out", str(run), *settings, *small])
    assert r.exit_code == 0, r.output
    final = json.loads((run / "final_eval.json").read_text())
    samples = [s for _, s in read_fasta(run / "samples" / "final.fasta")]
    assert final["iptm_mean"] == pytest.approx(np.mean([s.count("W") / 10 for s in samples]))
    assert final["plddt_mean"] == pytest.approx(np.mean([s.count("L") / 10 for s in samples]))
    assert final["reward_mean"] == pytest.approx(final["iptm_mean"] + 0.1 * final["plddt_mean"])  # no compactness
    assert final["compactness_mean"] < 0 and final["n"] == 4
