"""Antibody CDR-H3 redesign: IMGT numbering of the constant antibodies, the rewards on known sequences
(checked against independent computations and antiberty's own scorer), the task's in-filling prior and
metrics, the CLI, and the error paths. A tiny randomly initialised AntiBERTy (the antiberty package's class,
saved with `save_pretrained`) stands in for the real weights through ANTIBERTY_WEIGHTS_DIR; the tests on the
real weights (fetched from the antiberty==0.1.3 wheel) and on IgFold are marked slow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("transformers", reason="the antibody task needs the [protein] extra: pip install 'vidd[protein]'")
pytest.importorskip("antiberty", reason="the antibody task needs the [protein] extra: pip install 'vidd[protein]'")
pytest.importorskip("anarcii", reason="antibody numbering needs the [protein] extra: pip install 'vidd[protein]'")

from vidd.core.alphabets import SequenceError  # noqa: E402
from vidd.cli import app  # noqa: E402
from vidd.core.config import ConfigError, build, describe  # noqa: E402
from vidd.data.assays import LabelledSequences, read_labelled, synthetic_h3_library  # noqa: E402
from vidd.data.antibodies import ANTIBODIES, antibody, number_heavy_chain  # noqa: E402
from vidd.diffusion.order_agnostic import OrderAgnosticDiffusion  # noqa: E402
from vidd.core.extras import MissingExtra  # noqa: E402
from vidd.core.errors import UserError  # noqa: E402
from vidd.rewards import antibody as rewards  # noqa: E402
from vidd.rewards.antibody import (  # noqa: E402
    DEVELOPABILITY_TARGETS, DevelopabilityReward, NaturalnessReward, TargetRange, cdr_properties,
)
from vidd.rewards.assay_oracle import AssayOracle, AssayOracleConfig, train_assay_oracle  # noqa: E402
from vidd.tasks import Task  # noqa: E402

TRASTUZUMAB = ANTIBODIES["trastuzumab"].heavy
#: IMGT CDRs of the heavy chains (IMGT/mAb-DB); CDR-H3 = IMGT 105-117
EXPECTED_H3 = {"trastuzumab": "SRWGGDGFYAMDY", "pembrolizumab": "ARRDYRFDMGFDY", "adalimumab": "AKVSYLSTASSLDY",
               "nivolumab": "ATNDDY"}


@pytest.fixture(scope="module")
def tiny_antiberty(tmp_path_factory):
    """A tiny random AntiBERTy saved like the real weights folder; the numbering cache in a temp folder."""
    from transformers import BertConfig

    from antiberty.model.AntiBERTy import AntiBERTy

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("antiberty")
    config = BertConfig(vocab_size=25, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=160, pad_token_id=0)
    AntiBERTy(config).eval().save_pretrained(folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ANTIBERTY_WEIGHTS_DIR", str(folder))
        mp.setenv("VIDD_CACHE", str(tmp_path_factory.mktemp("cache")))
        rewards._antiberty.cache_clear()
        yield folder
    rewards._antiberty.cache_clear()


@pytest.fixture(scope="module")
def task(tiny_antiberty):
    return Task.get("antibody-cdrh3")


# ------------------------------------------------------------------ numbering
@pytest.mark.parametrize("name", sorted(EXPECTED_H3))
def test_imgt_numbering_gives_the_known_cdr_h3(tiny_antiberty, name):
    numbering = number_heavy_chain(ANTIBODIES[name].heavy)
    assert numbering.cdr("H3") == EXPECTED_H3[name]
    a, b = numbering.region("H3")
    assert ANTIBODIES[name].heavy[a - 1] == "C" and ANTIBODIES[name].heavy[b] == "W"  # Cys104 ... Trp118


def test_numbering_of_trastuzumab_cdrs_and_the_cache(tiny_antiberty):
    from vidd.data import antibodies

    numbering = number_heavy_chain(TRASTUZUMAB)
    assert numbering.cdrs == {"H1": "GFNIKDTY", "H2": "IYPTNGYT", "H3": "SRWGGDGFYAMDY"}
    path = antibodies._cache_path(TRASTUZUMAB)
    assert path.is_file() and json.loads(path.read_text())["scheme"] == "imgt"
    assert number_heavy_chain(TRASTUZUMAB) == numbering  # read back from the cache


def test_a_light_chain_is_not_numbered_as_a_heavy_chain(tiny_antiberty):
    from vidd.data.antibodies import NumberingError

    with pytest.raises(NumberingError, match="heavy chain"):
        number_heavy_chain(ANTIBODIES["trastuzumab"].light, cache=False)


def test_unknown_antibody_and_task_names():
    with pytest.raises(UserError, match="unknown antibody 'foo'.*trastuzumab"):
        antibody("foo")
    with pytest.raises(UserError, match="unknown task"):
        Task.get("antibody-cdrh3-foo")
    assert {f"antibody-cdrh3-{n}" for n in ANTIBODIES} <= set(Task.registry)


# ------------------------------------------------------------------ rewards
KYTE_DOOLITTLE = {"A": 1.8, "R": -4.5, "N": -3.5, "D": -3.5, "C": 2.5, "Q": -3.5, "E": -3.5, "G": -0.4, "H": -3.2,
                  "I": 4.5, "L": 3.8, "K": -3.9, "M": 1.9, "F": 2.8, "P": -1.6, "S": -0.8, "T": -0.7, "W": -0.9,
                  "Y": -1.3, "V": 4.2}
# Bjellqvist-style pK values, as ProtParam uses them: side chains, and termini that depend on the end residue
PK_POSITIVE = {"K": 10.0, "R": 12.0, "H": 5.98}
PK_NEGATIVE = {"D": 4.05, "E": 4.45, "C": 9.0, "Y": 10.0}
PK_NTERM = {"A": 7.59, "M": 7.0, "S": 6.93, "P": 8.36, "T": 6.82, "V": 7.44, "E": 7.7}
PK_CTERM = {"D": 4.55, "E": 4.75}


def charge_by_hand(seq: str, ph: float) -> float:
    """Henderson-Hasselbalch net charge: sum of the positive groups' 1/(1 + 10^(pH - pK)) minus the negative
    groups' 1/(1 + 10^(pK - pH)), with the termini's pK depending on the first and last residue."""
    positive = [PK_NTERM.get(seq[0], 7.5)] + [PK_POSITIVE[c] for c in seq if c in PK_POSITIVE]
    negative = [PK_CTERM.get(seq[-1], 3.55)] + [PK_NEGATIVE[c] for c in seq if c in PK_NEGATIVE]
    return sum(1 / (1 + 10 ** (ph - pk)) for pk in positive) - sum(1 / (1 + 10 ** (pk - ph)) for pk in negative)


def test_developability_matches_independent_computations_and_the_documented_hinges():
    """The CDR properties computed here without ProtParam: GRAVY as the mean Kyte-Doolittle hydropathy, the
    charge at pH 7.4 by Henderson-Hasselbalch, the pI by bisection of that charge; the instability index
    (Guruprasad et al. 1990 dipeptide table, too long to restate) against its known value 51.21."""
    cdr_list = ["GFNIKDTY", "IYPTNGYT", "SRWGGDGFYAMDY"]  # trastuzumab's IMGT H1, H2, H3
    regions = [(TRASTUZUMAB.index(c), TRASTUZUMAB.index(c) + len(c)) for c in cdr_list]
    reward = DevelopabilityReward(regions, len(TRASTUZUMAB))
    cdrs = "".join(cdr_list)
    assert reward.cdr_string(TRASTUZUMAB) == cdrs
    props = cdr_properties(cdrs)
    assert props["gravy"] == pytest.approx(sum(KYTE_DOOLITTLE[c] for c in cdrs) / len(cdrs))
    assert props["gravy"] == pytest.approx(-0.7414, abs=1e-4)
    assert props["charge"] == pytest.approx(charge_by_hand(cdrs, 7.4), abs=1e-3)
    lo, hi = 0.0, 14.0
    while hi - lo > 1e-6:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if charge_by_hand(cdrs, mid) > 0 else (lo, mid)
    assert props["pi"] == pytest.approx(lo, abs=0.01)
    assert props["instability"] == pytest.approx(51.21, abs=0.01)
    # by hand: GRAVY -0.74 (<= -0.5: 0), charge -1.46 (in [-2, 2]: 0), pI 4.43 (< 5: (5 - pI) / 1),
    # instability 51.2 (> 40: (II - 40) / 10)
    expected = -((5.0 - props["pi"]) + (props["instability"] - 40.0) / 10.0)
    assert reward([TRASTUZUMAB])[0] == pytest.approx(expected)
    assert TargetRange(low=1, high=2, scale=0.5).penalty(3.0) == pytest.approx(2.0)
    assert set(DEVELOPABILITY_TARGETS) == {"gravy", "charge", "pi", "instability"}


def test_unscorable_sequences_get_nan():
    reward = DevelopabilityReward([(0, 5)], length=10)
    values = reward(["ACDEFGHIKL", "ACDEFGHIKX", "ACDEF"])
    assert np.isfinite(values[0]) and np.isnan(values[1:]).all()


def test_naturalness_pseudo_mode_equals_antibertys_own_pseudo_log_likelihood(tiny_antiberty):
    from antiberty import AntiBERTyRunner

    seqs = [TRASTUZUMAB, "A" + TRASTUZUMAB[1:], ANTIBODIES["nivolumab"].heavy]
    ours = NaturalnessReward(range(len(TRASTUZUMAB)), mode="pseudo")(seqs)
    theirs = AntiBERTyRunner(device="cpu", checkpoint_path=str(tiny_antiberty)).pseudo_log_likelihood(seqs[:2])
    np.testing.assert_allclose(ours[:2], theirs.double().numpy(), rtol=1e-5)
    assert np.isnan(ours[2])  # nivolumab's VH is shorter than the region: unscorable
    short = NaturalnessReward(range(10), mode="pseudo")(seqs)  # mixed lengths are scored by length group
    np.testing.assert_allclose(short[:2], NaturalnessReward(range(10), mode="pseudo")(seqs[:2]))
    assert np.isfinite(short).all()


def test_masked_marginal_naturalness_equals_the_priors_marginals(task):
    """The training naturalness of a VH is the prior's own log p(x_0 | template) over the designable positions
    (a separate path)."""
    model = task.pretrained_model()
    designable = torch.tensor(task.designable)
    with torch.no_grad():
        log_x0 = model.denoise(model.initial_state(1), torch.tensor(1.0))[0]
    x0 = model.alphabet.encode([TRASTUZUMAB])[0]
    by_prior = float(log_x0[designable, x0[designable]].mean())
    natural = NaturalnessReward(task.designable, mode="masked-marginal")([TRASTUZUMAB])[0]
    assert natural == pytest.approx(by_prior, abs=1e-5)
    a = task.designable[0]
    one = NaturalnessReward([a], mode="masked-marginal")([TRASTUZUMAB])[0]
    assert one == pytest.approx(NaturalnessReward([a], mode="pseudo")([TRASTUZUMAB])[0])


def test_missing_igfold_extra_is_named(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "igfold", None)
    monkeypatch.setitem(__import__("sys").modules, "pydssp", None)
    rewards._igfold_runner.cache_clear()
    rewards.fold_antibody.cache_clear()
    with pytest.raises(MissingExtra, match=r"vidd\[antibody\]"):
        rewards.IgFoldReward("DIQ", (0, 3))(["ACDEF"])


# ------------------------------------------------------------------ the task
def test_the_prior_designs_only_the_binding_core_of_cdr_h3(task):
    """By default IMGT 107-116 are designed: trastuzumab's S R ... Y frame of CDR-H3 stays in every sample."""
    assert [task.numbering.label(i) for i in task.designable] == [str(n) for n in range(107, 117)]
    assert task.design(TRASTUZUMAB) == "WGGDGFYAMD" and task.designable_label == "IMGT 107-116"
    model = task.pretrained_model()
    assert isinstance(model, OrderAgnosticDiffusion) and model.length == len(TRASTUZUMAB)
    traj = model.sample(4, 4, torch.Generator().manual_seed(0), record=True)
    designable = torch.zeros(model.length, dtype=torch.bool)
    designable[task.designable] = True
    native = model.alphabet.encode([TRASTUZUMAB])[0]
    assert (traj.states[:, :, ~designable] == native[~designable]).all()
    assert (traj.states[0, :, designable] == model.mask_index).all()
    seqs = model.alphabet.decode(traj.final)
    task.check(seqs)
    assert all(task.cdr_h3(s)[:2] == "SR" and task.cdr_h3(s)[-1] == "Y" for s in seqs)


def with_design(task, design: str) -> str:
    """Trastuzumab's VH with `design` at the task's designable positions."""
    vh = list(TRASTUZUMAB)
    for i, residue in zip(task.designable, design, strict=True):
        vh[i] = residue
    return "".join(vh)


def test_evaluate_metrics_on_a_known_set(task, tmp_path):
    native = task.design(TRASTUZUMAB)
    loops = [native, "A" * len(native), "A" * (len(native) - 1) + "C"]
    seqs = [with_design(task, d) for d in loops]
    out = task.evaluate(seqs, likelihood_samples=2, structure_samples=0)
    # diversity by hand over the m(m-1) = 6 ordered pairs of normalised Hamming distances
    n = len(native)
    d01 = sum(x != "A" for x in native) / n
    d02 = sum(x != y for x, y in zip(native, loops[2])) / n
    d12 = 1 / n
    assert out["diversity"] == pytest.approx(2 * (d01 + d02 + d12) / 6)
    assert out["recovery"] == pytest.approx(np.mean([1.0, native.count("A") / n,
                                                     sum(x == y for x, y in zip(native, loops[2])) / n]))
    assert out["uniqueness"] == 1.0 and out["n"] == 3
    total = task.evaluation_reward(seqs)
    assert out["reward_median"] == pytest.approx(float(np.median(total)))
    natural = NaturalnessReward(task.designable, mode="pseudo")(seqs)
    assert out["naturalness_median"] == pytest.approx(float(np.median(natural)))
    assert task.diversity(seqs) == pytest.approx(out["diversity"])
    path = tmp_path / "s.fasta"
    task.write_samples(path, seqs)
    assert f"cdr_h3=SR{native}Y" in path.read_text()
    assert task.read_samples(path) == seqs


def test_evaluate_rejects_bad_samples(task):
    with pytest.raises(SequenceError, match="character 'X'"):
        task.evaluate([TRASTUZUMAB[:-1] + "X"], structure_samples=0)
    with pytest.raises(SequenceError, match="length"):
        task.evaluate([TRASTUZUMAB[:-1]], structure_samples=0)
    framework_changed = "A" + TRASTUZUMAB[1:]
    with pytest.raises(SequenceError, match=r"only the designable positions \(IMGT 107-116\)"):
        task.evaluate([framework_changed], structure_samples=0)
    a, _ = task.h3
    frame_changed = TRASTUZUMAB[:a] + "A" + TRASTUZUMAB[a + 1:]  # S105 of the CDR-H3 frame
    with pytest.raises(SequenceError, match=f"position {a + 1} is 'A'"):
        task.evaluate([frame_changed], structure_samples=0)


def test_reward_terms_select_and_weight_the_training_reward(tiny_antiberty):
    task = Task.get("antibody-cdrh3-nivolumab")
    assert set(task.training_reward().terms) == {"developability", "naturalness"}
    reward = task.configured({"developability": 2.0}).training_reward()
    assert set(task.training_reward().terms) == {"developability", "naturalness"}  # the task is unchanged
    assert set(reward.terms) == {"developability"}
    heavy = ANTIBODIES["nivolumab"].heavy
    assert reward([heavy])[0] == pytest.approx(2 * reward.terms["developability"][1]([heavy])[0])
    with pytest.raises(ConfigError, match="unknown term"):
        task.configured({"affinity": 1.0})
    with pytest.raises(ConfigError, match="binding term needs task.oracle"):
        task.configured({"binding": 1.0})
    with pytest.raises(ConfigError, match="no named reward terms"):
        Task.get("dhs-hepg2", {"developability": 1.0})
    factory = Task.get("antibody-cdrh3-nivolumab", {"naturalness": 1.0}).training_reward_factory()
    assert set(factory().terms) == {"naturalness"}  # what an executor's worker builds


def test_finetune_cli_smoke(tiny_antiberty, tmp_path):
    run = tmp_path / "run"
    args = ["finetune", "antibody-cdrh3-nivolumab", "--preset", "quick", "--out", str(run),
            "--set", "iterations=2", "--set", "eval_every=1", "--set", "eval_samples=4",
            "--set", "final_samples=4", "--set", "batch_size=4"]
    monkey = pytest.MonkeyPatch()
    monkey.setattr("vidd.tasks.antibody.AntibodyCDRH3._structure", lambda self, seqs, n: {})
    try:
        r = CliRunner().invoke(app, args)
    finally:
        monkey.undo()
    assert r.exit_code == 0, r.output
    final = json.loads((run / "final_eval.json").read_text())
    for key in ("reward_median", "developability_median", "naturalness_median", "recovery", "diversity"):
        assert np.isfinite(final[key]), key
    task = Task.get("antibody-cdrh3-nivolumab")
    samples = task.read_samples(run / "samples" / "final.fasta")  # checks the framework is unchanged
    assert len(samples) == 4
    header, *rows = [line.split("\t") for line in (run / "samples" / "final.tsv").read_text().splitlines()]
    assert header == ["sequence", "cdr_h3", "reward", "reward_developability", "reward_naturalness", "eval_reward",
                      "eval_reward_developability", "eval_reward_naturalness", "log_likelihood"]
    assert [r[0] for r in rows] == samples and [r[1] for r in rows] == [task.cdr_h3(s) for s in samples]
    for r in rows:  # weights 1 and 1: the reward is the sum of its terms
        assert float(r[2]) == pytest.approx(float(r[3]) + float(r[4]), abs=1e-4)
    assert f"sample_0 cdr_h3={rows[0][1]} reward={rows[0][2]} " in (run / "samples" / "final.fasta").read_text()
    r = CliRunner().invoke(app, ["sample", "antibody-cdrh3-nivolumab", "--checkpoint", str(run), "--n", "3",
                                 "--steps", "3", "--out", str(tmp_path / "s.fasta")])
    assert r.exit_code == 0, r.output
    assert len(task.read_samples(tmp_path / "s.fasta")) == 3


# ------------------------------------------------------------------ designable positions, binding oracle, report
def test_docs_list_every_setting_with_its_default():
    doc = (Path(__file__).parents[2] / "docs" / "tasks" / "antibody.md").read_text()
    rows = describe(Task.registry["antibody-cdrh3"].Settings, "task.")
    assert "\n".join(f"| `{field}` | `{default}` | {text} |" for field, default, text in rows) in doc


def test_positions_by_imgt_number_range_and_cdr(tiny_antiberty):
    numbering = number_heavy_chain(TRASTUZUMAB)
    a, b = numbering.region("H3")
    assert numbering.indices("107-116") == list(range(a + 2, b - 1))
    assert numbering.indices("H3") == numbering.indices(["h3"]) == list(range(a, b))
    assert numbering.indices([105, "117"]) == numbering.indices("105, 117") == [a, b - 1]
    assert numbering.indices("105-106,117,106") == [a, a + 1, b - 1]
    adalimumab = number_heavy_chain(ANTIBODIES["adalimumab"].heavy)
    (insertion,) = adalimumab.indices("112a")
    assert adalimumab.label(insertion) == "112A" and insertion in adalimumab.indices("107-116")
    with pytest.raises(UserError, match="'abc' is not an IMGT number"):
        numbering.indices("107,abc")
    with pytest.raises(UserError, match="'200' names no residue of this VH"):
        numbering.indices("200")
    task = Task.get("antibody-cdrh3", settings={"positions": "H3"})
    assert task.designable == list(range(a, b)) and task.designable_label == "IMGT 105-117"
    assert Task.get("antibody-cdrh3", settings={"positions": "H2,107-108"}).designable_label == "IMGT 56-65,107-108"
    nivolumab = Task.get("antibody-cdrh3-nivolumab")  # ATNDDY: IMGT 105-107 and 115-117 (the gap is numbering)
    assert nivolumab.design(ANTIBODIES["nivolumab"].heavy) == "NDD" and nivolumab.designable_label == "IMGT 107-116"
    with pytest.raises(ConfigError, match="task 'dhs-hepg2' has no settings"):
        Task.get("dhs-hepg2", settings={"positions": "H3"})
    with pytest.raises(ConfigError, match="task: unknown field"):
        Task.get("antibody-cdrh3", settings={"position": "H3"})


def train_loop_oracle(folder, alphabet="protein", ensemble=2, column="cdr_h3"):
    """A small logistic oracle of the synthetic binding library (planted rule, vidd.data.assays)."""
    rows = synthetic_h3_library(400, seed=1)
    data = LabelledSequences([r[column] for r in rows], np.array([r["binder"] for r in rows], float),
                             list(range(len(rows))), {"file": "synthetic", "label_column": "binder"})
    config = build(AssayOracleConfig, {"model": "logistic", "ensemble": ensemble})
    return train_assay_oracle(config, data, alphabet, log=lambda s: None).save(folder)


def test_the_binding_term_scores_the_loop_with_the_users_oracle(tiny_antiberty, tmp_path):
    folder = train_loop_oracle(tmp_path / "oracle")
    task = Task.get("antibody-cdrh3", settings={"oracle": str(folder), "pessimism": 0.5})
    assert task.reward_weights == {"developability": 1.0, "naturalness": 1.0, "binding": 1.0, "igfold": 0.0,
                                   "beta_strand": 0.0}
    binding = task.training_reward().terms["binding"][1]
    collapsed = with_design(task, "GGGSGSYYFD")  # the germline-like loop ARGGGSGSYYFDY of the frame-free run
    members = AssayOracle.load(folder).predict([task.cdr_h3(TRASTUZUMAB), task.cdr_h3(collapsed)])
    np.testing.assert_allclose(binding([TRASTUZUMAB, collapsed]), members.mean(0) - 0.5 * members.std(0))
    np.testing.assert_allclose(task.evaluation_reward.terms["binding"][1]([TRASTUZUMAB]), members.mean(0)[:1])
    assert members.mean(0)[0] > 0 > members.mean(0)[1]  # the oracle learnt the planted rule
    assert task.oracle_input([TRASTUZUMAB], AssayOracle.load(folder)) == ["SRWGGDGFYAMDY"]
    factory = task.training_reward_factory()  # what an executor's worker builds
    assert set(factory().terms) == {"developability", "naturalness", "binding"}
    weighted = task.configured({"binding": 2.0, "naturalness": 0.5}).training_reward()
    assert set(weighted.terms) == {"binding", "naturalness"} and weighted.terms["binding"][0] == 2.0


def test_binding_setting_errors(tiny_antiberty, tmp_path):
    folder = str(train_loop_oracle(tmp_path / "oracle", ensemble=1))
    with pytest.raises(ConfigError, match="gives the binding term no weight"):
        Task.get("antibody-cdrh3", {"developability": 1.0}, {"oracle": folder})
    with pytest.raises(ConfigError, match="task.pessimism: applies to the binding oracle"):
        Task.get("antibody-cdrh3", settings={"pessimism": 1.0})
    with pytest.raises(ConfigError, match="needs an oracle ensemble"):
        Task.get("antibody-cdrh3", settings={"oracle": folder, "pessimism": 1.0}).training_reward()
    with pytest.raises(ConfigError, match="reads 13 residues; antibody-cdrh3-adalimumab gives it the CDR-H3 loop "
                                          r"\(14\) or the VH \(121\)"):
        Task.get("antibody-cdrh3-adalimumab", settings={"oracle": folder}).training_reward()
    dna = tmp_path / "dna.csv"
    dna.write_text("seq,y\n" + "".join(f"{s},{i % 2}\n" for i, s in enumerate(["ACGTACGTACGTA", "TTGCATGCAACGT"] * 5)))
    dna_oracle = train_assay_oracle(build(AssayOracleConfig, {"model": "ridge"}), read_labelled(dna, "seq", "y"),
                                    "DNA", log=lambda s: None).save(tmp_path / "dna-oracle")
    with pytest.raises(ConfigError, match="an oracle of DNA sequences"):
        Task.get("antibody-cdrh3", settings={"oracle": str(dna_oracle)}).training_reward()


def test_report_tables_show_the_most_common_designs_and_the_frame(task):
    common, native = with_design(task, "GGGSGSYYFD"), TRASTUZUMAB
    top, summary = task.report_tables([common, native, common, common])
    assert top.columns == ["rank", "designed residues (IMGT 107-116)", "CDR-H3", "identity to native", "count",
                           "share"]
    assert top.rows == [[1, "GGGSGSYYFD", "SRGGGSGSYYFDY", "50%", 3, "75.0%"],  # G G . G . Y . . D shared
                        [2, "WGGDGFYAMD", "SRWGGDGFYAMDY", "100%", 1, "25.0%"]]
    rows = dict(summary.rows)
    assert rows["native residues at IMGT 107-116"] == "WGGDGFYAMD"
    assert rows["samples keeping the fixed CDR-H3 residues (S105 R106 Y117)"] == "4 of 4"
    assert rows["most common design"] == "3 of 4 (75.0%)" and rows["samples equal to the native"] == "1"
    assert rows["identity to the native residues: mean (min-max)"] == "62.5% (50%-100%)"
    whole = Task.get("antibody-cdrh3", settings={"positions": "H3"})
    loop_changed = TRASTUZUMAB.replace("SRWGGDGFYAMDY", "ARGGGSGSYYFDY")
    assert dict(whole.report_tables([loop_changed, native])[1].rows)[
        "samples keeping the fixed CDR-H3 residues (none)"] == "2 of 2"


def test_quick_preset_with_an_oracle_keeps_the_frame_and_reports_the_designs(tiny_antiberty, tmp_path, monkeypatch):
    """The whole workflow from the CLI on the tiny AntiBERTy: fine-tune against the user's oracle beside the
    cheap terms, every design keeps S R ... Y, the report shows the designs with counts, pick them by score."""
    folder = train_loop_oracle(tmp_path / "oracle")
    monkeypatch.setattr("vidd.tasks.antibody.AntibodyCDRH3._structure", lambda self, seqs, n: {})
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["finetune", "antibody-cdrh3", "--preset", "quick", "--out", str(run),
                                 "--set", "iterations=2", "--set", "eval_every=1", "--set", "eval_samples=4",
                                 "--set", "final_samples=6", "--set", "batch_size=4",
                                 "--set", f"task.oracle={folder}", "--set", "task.pessimism=1",
                                 "--set", "reward.terms={binding: 1, developability: 0.5, naturalness: 0.5}"])
    assert r.exit_code == 0, r.output
    final = json.loads((run / "final_eval.json").read_text())
    assert np.isfinite(final["binding_median"]) and final["n"] == 6
    task = Task.get("antibody-cdrh3")
    samples = task.read_samples(run / "samples" / "final.fasta")
    assert all(task.cdr_h3(s)[:2] == "SR" and task.cdr_h3(s)[-1] == "Y" for s in samples)
    page = (run / "report.html").read_text()
    assert "Most common designs" in page and "designed residues (IMGT 107-116)" in page
    assert "samples keeping the fixed CDR-H3 residues (S105 R106 Y117)</td><td>6 of 6" in page
    assert "binding (oracle mean)" in page
    header = (run / "samples" / "final.tsv").read_text().splitlines()[0].split("\t")
    assert {"reward_binding", "eval_reward_binding", "cdr_h3"} <= set(header)  # the per-sequence table
    r = CliRunner().invoke(app, ["oracle-predict", str(folder), "--run", str(run), "--task", "antibody-cdrh3",
                                 "--out", str(tmp_path / "p.csv")])
    assert r.exit_code == 0, r.output
    picked = (tmp_path / "p.csv").read_text().splitlines()
    assert picked[0] == "rank,sequence,count,score,mean,std" and len(picked[1].split(",")[1]) == 13


# ------------------------------------------------------------------ real weights (downloaded once) and IgFold
@pytest.mark.slow
def test_real_antiberty_scores_the_native_loop_above_scrambled_and_poly_w_loops(monkeypatch):
    monkeypatch.delenv("ANTIBERTY_WEIGHTS_DIR", raising=False)
    rewards._antiberty.cache_clear()
    try:
        a, b = 96, 109
        native = TRASTUZUMAB[a:b]
        seqs = [TRASTUZUMAB, TRASTUZUMAB[:a] + native[::-1] + TRASTUZUMAB[b:], TRASTUZUMAB[:a] + "W" * 13 + TRASTUZUMAB[b:]]
        for mode in ("masked-marginal", "pseudo"):
            values = NaturalnessReward(range(a, b), len(TRASTUZUMAB), mode)(seqs)
            assert values[0] > values[1] + 1.0 and values[1] > values[2], mode
            assert -3.0 < values[0] < -1.0, mode  # nats per residue of a real CDR-H3
    finally:
        rewards._antiberty.cache_clear()


@pytest.mark.slow
def test_igfold_structure_rewards_on_trastuzumab(monkeypatch):
    pytest.importorskip("igfold", reason="IgFold needs the [antibody] extra (academic, non-commercial licence)")
    pytest.importorskip("pydssp", reason="pydssp needs the [antibody] extra")
    monkeypatch.delenv("ANTIBERTY_WEIGHTS_DIR", raising=False)
    rewards._igfold_runner.cache_clear()
    rewards.fold_antibody.cache_clear()
    light = ANTIBODIES["trastuzumab"].light
    error = rewards.IgFoldReward(light, (96, 109), "h3_error", len(TRASTUZUMAB))
    beta = rewards.IgFoldReward(light, (96, 109), "beta_match", len(TRASTUZUMAB), beta_target=0.5)
    e = error([TRASTUZUMAB])[0]
    assert -5.0 < e < 0.0  # minus a mean predicted error of a few Angstrom at most
    fold = rewards.fold_antibody(TRASTUZUMAB, light)
    assert len(fold.prmsd) == len(TRASTUZUMAB) + len(light) and set(fold.dssp) <= set("HE-")
    assert fold.dssp.count("E") > 0.3 * len(fold.dssp)  # an immunoglobulin fold is mostly beta strands
    fraction = fold.dssp[96:109].count("E") / 13
    assert beta([TRASTUZUMAB])[0] == pytest.approx(-abs(fraction - 0.5))
    assert rewards.fold_antibody.cache_info().hits >= 1  # both rewards used one prediction
