"""`antibody-cdrh3`: redesign the CDR-H3 loop of a therapeutic antibody with the AntiBERTy prior.

The offline counterpart of the paper's protein tasks (EvoDiff fine-tuned against structure-based rewards):
the prior is AntiBERTy run as an order-agnostic in-filling diffusion model (`vidd.diffusion.order_agnostic`)
over the antibody's heavy-chain variable domain (VH), in which only the designable positions are designed
and every other residue stays fixed. Samples are VH strings (FASTA). `antibody-cdrh3` redesigns
trastuzumab; `antibody-cdrh3-NAME` any antibody of `vidd.data.antibodies.ANTIBODIES`. See
docs/tasks/antibody.md.

Settings (config section `task:`, `AntibodySettings`):
- positions: the designable IMGT positions (numbers, ranges, CDR names; `Numbering.indices`); default
  107-116, CDR-H3 inside its conserved frame (IMGT 105-106 and 117 stay, e.g. trastuzumab's S R ... Y);
- oracle: a user's assay oracle folder (`vidd train-oracle --data`), the `binding` term;
- pessimism: k of the binding term's mean - k std over the oracle's ensemble (training reward only).

Reward terms (config `reward.terms`, weights; 0 = not computed):
- developability (default 1): ProtParam hinge score on the heavy CDRs (`DevelopabilityReward`);
- naturalness (default 1): AntiBERTy masked-marginal log-likelihood of the designed residues, nats per
  residue;
- binding (default 1 with an oracle, else 0): the oracle's score of the CDR-H3 loop (or of the VH, for an
  oracle trained on VH sequences);
- igfold (default 0; extra [antibody], IgFold: academic non-commercial licence): minus the mean predicted
  error of CDR-H3 (Angstrom);
- beta_strand (default 0; same extra): minus |beta-strand fraction of CDR-H3 - 0.5| (pydssp on IgFold).
The evaluation reward has the same terms, but naturalness is the AntiBERTy pseudo-log-likelihood (each
designed position masked alone), a differently computed score than the one trained on, and binding is
the oracle's ensemble mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from vidd.core.alphabets import PROTEIN, SequenceError
from vidd.core.config import ConfigError, option
from vidd.core.errors import UserError
from vidd.core.extras import MissingExtra
from vidd.core.seqio import write_fasta
from vidd.data.antibodies import ANTIBODIES, antibody, number_heavy_chain
from vidd.diffusion.loaders import antiberty_prior
from vidd.diffusion.order_agnostic import template_tokens
from vidd.eval import metrics
from vidd.eval.tables import TOP_DESIGNS, DesignCounts, ReportTable
from vidd.rewards.antibody import BindingReward, DevelopabilityReward, IgFoldReward, NaturalnessReward
from vidd.rewards.assay_oracle import AssayOracle, AssayOracleReward
from vidd.rewards.base import WeightedSum
from vidd.tasks.base import PRESETS_DIR, Task

#: target beta-strand fraction of CDR-H3 for the beta_strand term (the paper's secondary-structure match)
BETA_TARGET = 0.5


@dataclass
class AntibodySettings:
    positions: Any = option(
        "107-116", "designable IMGT positions: numbers (107, 112A), inclusive ranges (107-116) and CDRs (H1, H2, "
                   "H3), a list or comma-separated; default: CDR-H3 inside its conserved frame (IMGT 105-106 and "
                   "117 stay)")
    oracle: str = option("", "an assay oracle folder (`vidd train-oracle --data`): the binding term, weight 1 "
                             "unless reward.terms says otherwise (docs/oracles.md)")
    pessimism: float = option(0.0, "k of the binding term's ensemble mean - k std (the training reward only)")


class AntibodyCDRH3(Task):
    name = "antibody-cdrh3"
    antibody_name = "trastuzumab"
    alphabet = PROTEIN
    chain = "order-agnostic"
    presets_dir = PRESETS_DIR / "antibody-cdrh3"  # every antibody-cdrh3-NAME task shares them
    reward_terms = {"developability": 1.0, "naturalness": 1.0, "binding": 0.0, "igfold": 0.0, "beta_strand": 0.0}
    Settings = AntibodySettings
    table_metrics = ("reward_median", "developability_median", "naturalness_median", "predicted_error_median",
                     "recovery", "diversity", "uniqueness")
    tradeoff_metrics = ("diversity", "naturalness_median")

    def __init__(self, reward_terms: dict[str, float] | None = None, settings: dict | None = None):
        super().__init__(reward_terms, settings)
        oracle, binding = self.settings.oracle, self.reward_weights.get("binding", 0.0)
        if binding and not oracle:
            raise ConfigError("reward.terms: the binding term needs task.oracle (an assay oracle folder made by "
                              "`vidd train-oracle --data`)")
        if oracle and not binding:
            raise ConfigError(f"task.oracle: {oracle} is set, but reward.terms gives the binding term no weight "
                              f"(add binding: 1)")
        if self.settings.pessimism and not oracle:
            raise ConfigError("task.pessimism: applies to the binding oracle, but task.oracle is not set")

    def default_weights(self) -> dict[str, float]:
        """The default terms, with binding at weight 1 when an oracle is given."""
        return {**self.reward_terms, **({"binding": 1.0} if self.settings.oracle else {})}

    # ---------------------------------------------------------- the antibody
    @cached_property
    def antibody(self):
        return antibody(self.antibody_name)

    @cached_property
    def numbering(self):
        """IMGT numbering of the VH (ANARCII, cached in $VIDD_CACHE/antibodies)."""
        return number_heavy_chain(self.antibody.heavy)

    @property
    def length(self) -> int:
        return len(self.antibody.heavy)

    @cached_property
    def h3(self) -> tuple[int, int]:
        """[start, end) of CDR-H3 in the VH."""
        return self.numbering.region("H3")

    @property
    def likelihood_steps(self) -> int:
        """The in-filling chain reveals one designable position a step."""
        return len(self.designable)

    def cdr_h3(self, seq: str) -> str:
        a, b = self.h3
        return seq[a:b]

    @cached_property
    def designable(self) -> list[int]:
        """Sorted VH indices of the designable positions (setting `positions`, IMGT numbering)."""
        return self.numbering.indices(self.settings.positions)

    @cached_property
    def designable_label(self) -> str:
        """The designable positions as IMGT numbers, runs of consecutive residues joined: "IMGT 107-116"."""
        runs: list[list[int]] = []
        for i in self.designable:
            if runs and i == runs[-1][-1] + 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        label = self.numbering.label
        return "IMGT " + ",".join(label(r[0]) if len(r) == 1 else f"{label(r[0])}-{label(r[-1])}" for r in runs)

    def design(self, seq: str) -> str:
        """The residues of a VH at the designable positions."""
        return "".join(seq[i] for i in self.designable)

    @cached_property
    def template(self) -> torch.Tensor:
        """The VH with the designable positions masked: the in-filling template of the prior."""
        return template_tokens(self.alphabet, self.antibody.heavy, self.designable)

    def pretrain_sequences(self):
        raise UserError(f"{self.name}: the prior is AntiBERTy, pretrained by its authors on 558M antibody "
                        f"sequences; `vidd pretrain` does not train it")

    def pretrained_model(self):
        """AntiBERTy (weights of the antiberty==0.1.3 wheel) as an OA in-filling model of CDR-H3."""
        model = antiberty_prior(self.template)
        model.metadata = {"task": self.name, "antibody": self.antibody_name, "cdr_h3": list(self.h3),
                          "designable": self.designable_label}
        return model

    # ---------------------------------------------------------- rewards
    def _reward(self, naturalness_mode: str, pessimism: float):
        build = {
            "developability": lambda: DevelopabilityReward([self.numbering.region(c) for c in ("H1", "H2", "H3")],
                                                           self.length),
            "naturalness": lambda: NaturalnessReward(self.designable, self.length, naturalness_mode),
            "binding": lambda: self._binding(pessimism),
            "igfold": lambda: IgFoldReward(self.antibody.light, self.h3, "h3_error", self.length),
            "beta_strand": lambda: IgFoldReward(self.antibody.light, self.h3, "beta_match", self.length,
                                                beta_target=BETA_TARGET),
        }
        terms = {k: (w, build[k]()) for k, w in self.reward_weights.items() if w != 0}
        return WeightedSum(terms, name=f"{self.name}:{'+'.join(terms)}")

    def _binding(self, pessimism: float) -> BindingReward:
        oracle = AssayOracleReward(self.settings.oracle, pessimism)
        return BindingReward(oracle, self._oracle_region(oracle.oracle), self.length)

    def _oracle_region(self, oracle: AssayOracle) -> tuple[int, int] | None:
        """What the oracle reads: the whole VH (an oracle of VH-long sequences), else the CDR-H3 loop."""
        if oracle.alphabet.letters != self.alphabet.letters:
            raise ConfigError(f"task.oracle: an oracle of {oracle.alphabet.name} sequences; {self.name} needs one "
                              f"trained on protein sequences")
        if oracle.length == self.length:
            return None
        loop = self.h3[1] - self.h3[0]
        fits = loop <= oracle.length if not oracle.spec["fixed_length"] else loop == oracle.length
        if not fits:
            raise ConfigError(f"task.oracle: the oracle reads {'up to ' * (not oracle.spec['fixed_length'])}"
                              f"{oracle.length} residues; {self.name} gives it the CDR-H3 loop ({loop}) or the VH "
                              f"({self.length})")
        return self.h3

    def oracle_input(self, seqs: list[str], oracle: AssayOracle) -> list[str]:
        """The CDR-H3 loops of VH samples (the whole VHs for an oracle trained on VH sequences)."""
        region = self._oracle_region(oracle)
        return [s[slice(*region)] for s in seqs] if region else seqs

    def training_reward(self):
        """Weighted sum of the reward terms, naturalness as the AntiBERTy masked marginal of the designed
        residues, binding pessimistic (`pessimism`)."""
        return self._reward("masked-marginal", self.settings.pessimism)

    @cached_property
    def evaluation_reward(self):
        """The same terms, naturalness as the AntiBERTy pseudo-log-likelihood of the designed residues, binding
        as the oracle's ensemble mean."""
        return self._reward("pseudo", 0.0)

    # ---------------------------------------------------------- samples and metrics
    def check(self, seqs: list[str], where: str = "sample") -> None:
        """Every sequence is a VH of the task's antibody: right letters and length, and only the designable
        positions differ from it."""
        heavy, designable = self.antibody.heavy, set(self.designable)
        for i, s in enumerate(seqs, start=1):
            self.alphabet.validate(s, self.length, where=f"{where} {i}")
            for p, (x, y) in enumerate(zip(s, heavy)):
                if x != y and p not in designable:
                    raise SequenceError(f"{where} {i}: position {p + 1} is {x!r}, but only the designable positions "
                                        f"({self.designable_label}) may differ from {self.antibody_name}'s VH "
                                        f"({y!r} there)")

    def read_samples(self, path) -> list[str]:
        seqs = super().read_samples(path)
        self.check(seqs, where=f"{path}: sequence")
        return seqs

    def write_samples(self, path, seqs: list[str], scores: dict[str, list] | None = None) -> None:
        write_fasta(path, seqs, {"cdr_h3": [self.cdr_h3(s) for s in seqs], **(scores or {})})

    def per_sequence(self, seqs: list[str], reward=None, likelihood_samples: int | None = 4, seed: int = 0) -> dict:
        """The default columns with the CDR-H3 loop after the sequence; the training and evaluation rewards
        come with their terms (`reward_<term>`, `eval_reward_<term>`)."""
        self.check(seqs)
        columns = super().per_sequence(seqs, reward, likelihood_samples, seed)
        return {"sequence": columns.pop("sequence"), "cdr_h3": [self.cdr_h3(s) for s in seqs], **columns}

    def diversity(self, seqs: list[str]) -> float:
        """Normalised Hamming distance between designs (designable residues) over the m(m-1) ordered pairs."""
        return metrics.diversity([self.design(s) for s in seqs])

    def recovery(self, seqs: list[str]) -> np.ndarray:
        """Fraction of designable positions equal to the native antibody, per sequence."""
        native = self.design(self.antibody.heavy)
        return np.array([sum(x == y for x, y in zip(self.design(s), native)) / len(native) for s in seqs])

    def evaluate(self, seqs: list[str], likelihood_samples: int | None = 4, structure_samples: int = 16,
                 seed: int = 0) -> dict:
        """Reward, naturalness, predicted error, recovery and diversity of VH samples; keys in docs/metrics.md.

        likelihood_samples: Monte Carlo steps of the prior's ELBO per sequence (None: every step);
        structure_samples: how many of the samples IgFold folds for predicted_error_median and
        beta_fraction_mean (only when the [antibody] extra is installed; 0: never).
        """
        self.check(seqs)
        reward = self.evaluation_reward
        parts = reward.components(seqs)
        total = reward.combine(parts)
        out = {"reward_median": metrics.finite_median(total), "reward_mean": float(np.nanmean(total))}
        for key, values in parts.items():
            out[f"{key}_median"] = metrics.finite_median(values)
        if "naturalness" not in parts:
            out["naturalness_median"] = metrics.finite_median(self._naturalness(seqs))
        out.update(self._structure(seqs, structure_samples))
        steps = self.likelihood_steps
        elbo = self.log_likelihood(seqs, steps, likelihood_samples and min(likelihood_samples, steps), seed,
                                   batch_size=64)
        designs = [self.design(s) for s in seqs]
        out.update({
            "log_likelihood_median": float(np.median(elbo)),
            "recovery": float(self.recovery(seqs).mean()),
            "diversity": metrics.diversity(designs) if len(seqs) > 1 else float("nan"),
            "uniqueness": metrics.uniqueness(designs),
            "n": len(seqs),
        })
        return out

    def report_tables(self, seqs: list[str]) -> list[ReportTable]:
        """The most common designs with their counts, CDR-H3, identity to the native (and binding score, with
        an oracle); how the designs compare with the native and keep the fixed CDR-H3 residues."""
        counts = DesignCounts(seqs)
        native = self.design(self.antibody.heavy)
        designs, recovery = [self.design(s) for s in seqs], self.recovery(seqs)
        identity = dict(zip(seqs, recovery))
        columns = {f"designed residues ({self.designable_label})": self.design, "CDR-H3": self.cdr_h3,
                   "identity to native": lambda s: f"{identity[s]:.0%}"}
        if self.reward_weights.get("binding"):
            top = [s for s, _ in counts.counts[:TOP_DESIGNS]]
            binding = dict(zip(top, self.evaluation_reward.terms["binding"][1](top)))
            columns["binding (oracle mean)"] = binding.get
        heavy = self.antibody.heavy
        fixed = [i for i in range(*self.h3) if i not in set(self.designable)]
        frame = " ".join(f"{heavy[i]}{self.numbering.label(i)}" for i in fixed) or "none"
        kept = sum(all(s[i] == heavy[i] for i in fixed) for s in seqs)
        n, top_count = len(seqs), counts.counts[0][1]
        summary = ReportTable(f"Designs and the native {self.antibody_name} loop", ["measure", "value"], [
            [f"native residues at {self.designable_label}", native],
            ["samples / distinct designs", f"{n} / {len(counts.counts)}"],
            ["most common design", f"{top_count} of {n} ({top_count / n:.1%})"],
            [f"samples keeping the fixed CDR-H3 residues ({frame})", f"{kept} of {n}"],
            ["identity to the native residues: mean (min-max)",
             f"{recovery.mean():.1%} ({recovery.min():.0%}-{recovery.max():.0%})"],
            ["samples equal to the native", str(designs.count(native))],
            ["diversity of designs (normalised Hamming)", metrics.diversity(designs) if n > 1 else float("nan")],
        ])
        return [counts.table(columns, title="Most common designs"), summary]

    def _naturalness(self, seqs):
        return NaturalnessReward(self.designable, self.length, "pseudo")(seqs)

    def _structure(self, seqs: list[str], n: int) -> dict:
        if n <= 0:
            return {}
        folder = IgFoldReward(self.antibody.light, self.h3, length=self.length)
        subset = seqs[:n]
        try:
            errors = np.array([folder.h3_error(s) for s in subset])
        except MissingExtra:
            return {}
        beta = np.array([folder.beta_fraction(s) for s in subset])
        return {"predicted_error_median": float(np.median(errors)), "beta_fraction_mean": float(beta.mean()),
                "structure_n": len(subset)}


for _name in ANTIBODIES:  # antibody-cdrh3-NAME for every antibody (antibody-cdrh3 is trastuzumab)
    type(f"AntibodyCDRH3_{_name}", (AntibodyCDRH3,), {
        "name": f"antibody-cdrh3-{_name}", "antibody_name": _name, "__module__": __name__,
        "__doc__": f"`antibody-cdrh3` for {_name}."})
