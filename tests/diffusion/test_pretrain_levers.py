"""The levers of a pretrained model (`vidd pretrain`, docs/tasks/molecules.md): how many training sequences
(`train_sequences`, MOSES' held-out molecules kept apart), SMILES randomisation (`augment`), and the sampling
steps of `vidd model-report`; on tiny data and a fake MOSES."""

import json
import random
import re

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("rdkit", reason="molecules need the [chem] extra: pip install 'vidd[chem]'")
pytest.importorskip("selfies", reason="molecules need the [chem] extra: pip install 'vidd[chem]'")

from support.fake_moses import PRETRAIN_MOLECULES, VALID_MOLECULES, fake_moses, use_fake_moses, \
    write_fake_moses_asset  # noqa: E402

from vidd.chem import molecules  # noqa: E402
from vidd.chem.molecules import random_selfies, random_selfies_corpus, selfies_to_smiles, smiles_to_selfies  # noqa: E402
from vidd.cli import app  # noqa: E402
from vidd.core import config as cfg  # noqa: E402
from vidd.core.alphabets import DNA  # noqa: E402
from vidd.diffusion import pretrain as pretraining  # noqa: E402
from vidd.diffusion.masked import MaskedDiffusion  # noqa: E402

TINY = ["--set", "model.backbone=transformer", "--set", "model.hidden=8", "--set", "model.layers=1", "--set",
        "model.heads=2", "--set", "batch_size=16", "--set", "warmup_steps=1", "--set", "eval_every=1000", "--set",
        "ema=0", "--set", "eval_sequences=8"]
MOLECULES = ["CC(=O)Oc1ccccc1C(=O)O", "CC(=O)Nc1ccc(O)cc1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "NC(=O)c1ccccc1",
             "O=C(CCCN1CCC(O)(c2ccc(Cl)cc2)CC1)c1ccc(F)cc1", "Cn1c(=O)c2c(ncn2C)n(C)c1=O", "OCCN1CCOCC1", "c1ccncc1"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def fake_moses_env(tmp_path, monkeypatch):
    """The fake MOSES in place, a tiny model over its tokens as the moses asset, an empty cache."""
    write_fake_moses_asset(tmp_path / "assets")
    monkeypatch.setenv("VIDD_ASSETS", str(tmp_path / "assets"))
    monkeypatch.setenv("VIDD_CACHE", str(tmp_path / "cache"))
    use_fake_moses(monkeypatch.setattr)
    from vidd.chem import metrics

    yield
    metrics.moses_training_set.cache_clear()
    metrics.reference_properties.cache_clear()


# ------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize("setting, message", [
    ({"train_sequences": -2}, "train_sequences: must be a count >= 1, 0 (the data's default) or -1 (all), got -2"),
    ({"augment": "random-selfies"}, "augment"),
    ({"augment_workers": 0}, "augment_workers: must be >= 1, got 0"),
])
def test_pretrain_settings_are_checked(setting, message):
    with pytest.raises(cfg.ConfigError, match=re.escape(message)):
        cfg.build(pretraining.PretrainConfig, setting)


def test_augmenting_a_corpus_that_is_no_molecules_is_an_error(tmp_path):
    config = cfg.build(pretraining.PretrainConfig, {"augment": "random-smiles"})
    with pytest.raises(cfg.ConfigError, match="augment: random-smiles randomises molecules and needs a SELFIES "
                                              "corpus .*; this corpus's alphabet is DNA"):
        pretraining.pretrain(config, DNA, ["ACGT"] * 4, ["ACGT"], tmp_path / "pt")
    assert not (tmp_path / "pt").exists()


# ------------------------------------------------------------------------------ randomisation
def test_random_selfies_is_the_same_molecule_written_otherwise_and_reproducible():
    selfies = [smiles_to_selfies(s) for s in MOLECULES]
    drawn = [random_selfies(s, random.Random(3)) for s in selfies]
    assert [selfies_to_smiles(d) for d in drawn] == [selfies_to_smiles(s) for s in selfies]
    assert sum(d != s for d, s in zip(drawn, selfies)) >= 6  # pyridine may come out canonical
    assert [random_selfies(s, random.Random(3)) for s in selfies] == drawn
    assert random_selfies("", random.Random(0)) == "" and random_selfies("[C]", random.Random(0)) == "[C]"


def test_random_corpus_draws_do_not_depend_on_the_number_of_workers(monkeypatch):
    monkeypatch.setattr(molecules, "RANDOM_CHUNK", 3)  # three chunks
    corpus = [smiles_to_selfies(s) for s in MOLECULES]
    one = random_selfies_corpus(corpus, seed=5)
    assert random_selfies_corpus(corpus, seed=5, workers=2) == one
    assert random_selfies_corpus(corpus, seed=6) != one


def test_augmented_pretraining_draws_each_epoch_and_keeps_what_misfits(tmp_path, monkeypatch):
    """Every epoch (and the epoch a resumed run is in) is randomised with its own seed; a randomised molecule
    that does not fit the model (here: every other one, given a token outside the vocabulary) is trained on as
    it was, and the log says how many were."""
    seeds = []

    def planted(corpus, seed, workers=1):
        seeds.append(seed)
        return [("[Si]" + s) if i % 2 == 0 else "".join(reversed(molecules.selfies_alphabet([s]).split(s)))
                for i, s in enumerate(corpus)]

    monkeypatch.setattr(pretraining, "random_selfies_corpus", planted)
    data = tmp_path / "mols.smi"
    data.write_text("\n".join(MOLECULES * 5) + "\n")  # 40 molecules, the first 2 held out: 38, 1 step an epoch
    common = [*TINY, "--set", "eval_every=1", "--set", "augment=random-smiles", "--set", "batch_size=38"]
    r = invoke("pretrain", "--data", data, "--out", tmp_path / "pt", "--set", "epochs=2", *common)
    assert r.exit_code == 0, r.output
    assert seeds == [0, 1]
    log = [json.loads(line) for line in (tmp_path / "pt" / "log.jsonl").read_text().splitlines()]
    assert [row["augment_unchanged"] for row in log] == [0.5, 0.5]
    r = invoke("pretrain", "--data", data, "--out", tmp_path / "pt", "--resume", "--set", "epochs=3", *common)
    assert r.exit_code == 0, r.output
    assert seeds == [0, 1, 2]
    config = MaskedDiffusion.load(tmp_path / "pt" / "model").metadata["config"]
    assert config["augment"] == "random-smiles"


# ------------------------------------------------------------------------ continued pretraining
def test_init_from_starts_from_a_model_folders_weights(tmp_path):
    """With lr 0 and no EMA, a run started from a model folder keeps its weights exactly; its log starts with
    the starting model's validation and its config records where it started."""
    data = tmp_path / "train.fasta"
    rng = np.random.default_rng(0)
    data.write_text("".join(f">s{i}\n{''.join(rng.choice(list('ACGT'), 12))}\n" for i in range(60)))
    r = invoke("pretrain", "--data", data, "--out", tmp_path / "first", "--set", "epochs=1", *TINY)
    assert r.exit_code == 0, r.output
    r = invoke("pretrain", "--data", data, "--out", tmp_path / "second", "--set", "epochs=1", "--set", "lr=0",
               "--set", f"init_from={tmp_path / 'first' / 'model'}", "--set", "seed=5", *TINY)
    assert r.exit_code == 0, r.output
    first, second = (MaskedDiffusion.load(tmp_path / name / "model") for name in ("first", "second"))
    assert first.weights_sha256() == second.weights_sha256()
    log = [json.loads(line) for line in (tmp_path / "second" / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [0, 3]  # the starting model's validation first
    assert log[0]["val_bits_per_token"] == pytest.approx(log[1]["val_bits_per_token"])
    assert second.metadata["config"]["init_from"] == str(tmp_path / "first" / "model")
    r = invoke("pretrain", "--data", data, "--out", tmp_path / "third", "--set", "epochs=1",
               "--set", f"init_from={tmp_path / 'first' / 'model'}", "--set", "seed=5", *TINY)
    assert r.exit_code == 0, r.output
    assert MaskedDiffusion.load(tmp_path / "third" / "model").weights_sha256() != first.weights_sha256()


@pytest.mark.parametrize("start, message", [
    ("missing", "init_from: {tmp}/missing is not a model folder (no config.json there)"),
    ("first/model", "init_from: {tmp}/first/model is not the model these settings and data build (backbone: "),
])
def test_init_from_a_folder_that_does_not_fit_fails_before_the_run_folder(tmp_path, start, message):
    data = tmp_path / "train.fasta"
    data.write_text("".join(f">s{i}\nACGTACGTAC\n" for i in range(40)))
    r = invoke("pretrain", "--data", data, "--out", tmp_path / "first", "--set", "epochs=1", *TINY)
    assert r.exit_code == 0, r.output
    r = invoke("pretrain", "--data", data, "--out", tmp_path / "second", "--set", "epochs=1",
               "--set", f"init_from={tmp_path / start}", *TINY, "--set", "model.hidden=16")
    assert r.exit_code != 0
    assert message.format(tmp=tmp_path) in " ".join(r.output.split())
    assert not (tmp_path / "second").exists()


# --------------------------------------------------------------------------- how much data
def test_train_sequences_takes_a_seeded_subset_of_data(tmp_path):
    data = tmp_path / "train.fasta"
    rng = np.random.default_rng(0)
    data.write_text("".join(f">s{i}\n{''.join(rng.choice(list('ACGT'), 12))}\n" for i in range(60)))
    r = invoke("pretrain", "--data", data, "--out", tmp_path / "pt", "--set", "epochs=1", "--set",
               "train_sequences=10", *TINY)
    assert r.exit_code == 0, r.output
    assert MaskedDiffusion.load(tmp_path / "pt" / "model").metadata["train_sequences"] == 10


def test_moses_pretraining_sizes_share_one_held_out_set(fake_moses_env):
    from vidd.data.moses import pretraining_corpus

    train = fake_moses()["train"]
    default, valid = pretraining_corpus(0, PRETRAIN_MOLECULES, VALID_MOLECULES)
    assert len(default) == PRETRAIN_MOLECULES and len(valid) == VALID_MOLECULES
    some, valid_some = pretraining_corpus(50, PRETRAIN_MOLECULES, VALID_MOLECULES)
    everything, valid_all = pretraining_corpus(-1, PRETRAIN_MOLECULES, VALID_MOLECULES)
    assert valid_some == valid and valid_all == valid
    assert len(some) == 50 and len(everything) == len(train) - VALID_MOLECULES
    assert not set(valid) & set(everything) and set(some) <= set(everything)
    assert pretraining_corpus(10**9, PRETRAIN_MOLECULES, VALID_MOLECULES)[0] == everything


def test_moses_qed_pretrains_on_all_molecules_that_fit_its_vocabulary(fake_moses_env, tmp_path, monkeypatch,
                                                                      caplog):
    import vidd.data.moses
    from vidd.tasks import Task

    odd = "BrCC1CCCCC1"  # [Br]: no token of the task's model
    train = fake_moses()["train"] + (odd,)
    monkeypatch.setattr(vidd.data.moses, "load_moses", lambda split: train if split == "train" else ())
    fits, _ = Task.get("moses-qed").pretrain_sequences(-1)
    assert len(fits) == len(train) - VALID_MOLECULES - 1 and smiles_to_selfies(odd) not in fits
    assert "left out 1 MOSES molecules" in caplog.text
    r = invoke("pretrain", "--task", "moses-qed", "--out", tmp_path / "pt", "--set", "train_sequences=-1",
               "--set", "epochs=0.02", "--set", "augment=random-smiles", *TINY)
    assert r.exit_code == 0, r.output
    model = MaskedDiffusion.load(tmp_path / "pt" / "model")
    assert model.metadata["train_sequences"] == len(fits)
    Task.get("moses-qed").check_model(model, "the new model")  # the task's vocabulary and length


def test_model_report_samples_with_the_steps_asked_for(fake_moses_env, tmp_path):
    r = invoke("model-report", "--task", "moses-qed", "--samples", "8", "--steps", "4", "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["steps"] == 4 and report["samples"] == 8 and 0 <= report["validity"] <= 1 and "FCD" in report
    r = invoke("model-report", "--task", "moses-qed", "--samples", "8", "--steps", "-1")
    assert r.exit_code == 2 and "--steps: must be >= 1" in r.output
