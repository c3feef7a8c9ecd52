"""`antibody-cdrh3`: redesign the CDR-H3 loop of a therapeutic antibody with the AntiBERTy prior.

The offline counterpart of the paper's protein tasks (EvoDiff fine-tuned against structure-based rewards):
the prior is AntiBERTy run as an order-agnostic in-filling diffusion model (`vidd.diffusion.order_agnostic`)
over the antibody's heavy-chain variable domain (VH), in which only the IMGT CDR-H3 positions are designed
(at the native loop length) and the framework, CDR-H1 and CDR-H2 stay fixed. Samples are VH strings
(FASTA). `antibody-cdrh3` redesigns trastuzumab; `antibody-cdrh3-NAME` any antibody of
`vidd.data.antibodies.ANTIBODIES`. See docs/tasks/antibody.md.

Reward terms (config `reward.terms`, weights; 0 = not computed):
- developability (default 1): ProtParam hinge score on the heavy CDRs (`DevelopabilityReward`);
- naturalness (default 1): AntiBERTy masked-marginal log-likelihood of CDR-H3, nats per residue;
- igfold (default 0; extra [antibody], IgFold: academic non-commercial licence): minus the mean predicted
  error of CDR-H3 (Angstrom);
- beta_strand (default 0; same extra): minus |beta-strand fraction of CDR-H3 - 0.5| (pydssp on IgFold).
The evaluation reward has the same terms, but naturalness is the AntiBERTy pseudo-log-likelihood (each
CDR-H3 position masked alone), a differently computed score than the one trained on.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch

from vidd.core.alphabets import PROTEIN, SequenceError
from vidd.core.errors import UserError
from vidd.core.extras import MissingExtra
from vidd.core.seqio import write_fasta
from vidd.data.antibodies import ANTIBODIES, antibody, number_heavy_chain
from vidd.diffusion.loaders import antiberty_prior
from vidd.diffusion.order_agnostic import template_tokens
from vidd.eval import metrics
from vidd.rewards.antibody import DevelopabilityReward, IgFoldReward, NaturalnessReward
from vidd.rewards.base import WeightedSum
from vidd.tasks.base import PRESETS_DIR, Task

#: target beta-strand fraction of CDR-H3 for the beta_strand term (the paper's secondary-structure match)
BETA_TARGET = 0.5


class AntibodyCDRH3(Task):
    name = "antibody-cdrh3"
    antibody_name = "trastuzumab"
    alphabet = PROTEIN
    chain = "order-agnostic"
    presets_dir = PRESETS_DIR / "antibody-cdrh3"  # every antibody-cdrh3-NAME task shares them
    reward_terms = {"developability": 1.0, "naturalness": 1.0, "igfold": 0.0, "beta_strand": 0.0}
    table_metrics = ("reward_median", "developability_median", "naturalness_median", "predicted_error_median",
                     "recovery", "diversity", "uniqueness")
    tradeoff_metrics = ("diversity", "naturalness_median")

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
        """The in-filling chain reveals one CDR-H3 position a step."""
        return self.h3[1] - self.h3[0]

    @property
    def native_h3(self) -> str:
        a, b = self.h3
        return self.antibody.heavy[a:b]

    def cdr_h3(self, seq: str) -> str:
        a, b = self.h3
        return seq[a:b]

    @cached_property
    def template(self) -> torch.Tensor:
        """The VH with CDR-H3 masked: the in-filling template of the prior."""
        return template_tokens(self.alphabet, self.antibody.heavy, slice(*self.h3))

    def pretrain_sequences(self):
        raise UserError(f"{self.name}: the prior is AntiBERTy, pretrained by its authors on 558M antibody "
                        f"sequences; `vidd pretrain` does not train it")

    def pretrained_model(self):
        """AntiBERTy (weights of the antiberty==0.1.3 wheel) as an OA in-filling model of CDR-H3."""
        model = antiberty_prior(self.template)
        model.metadata = {"task": self.name, "antibody": self.antibody_name, "cdr_h3": list(self.h3)}
        return model

    # ---------------------------------------------------------- rewards
    def _reward(self, naturalness_mode: str):
        build = {
            "developability": lambda: DevelopabilityReward([self.numbering.region(c) for c in ("H1", "H2", "H3")],
                                                           self.length),
            "naturalness": lambda: NaturalnessReward(self.h3, self.length, naturalness_mode),
            "igfold": lambda: IgFoldReward(self.antibody.light, self.h3, "h3_error", self.length),
            "beta_strand": lambda: IgFoldReward(self.antibody.light, self.h3, "beta_match", self.length,
                                                beta_target=BETA_TARGET),
        }
        terms = {k: (w, build[k]()) for k, w in self.reward_weights.items() if w != 0}
        return WeightedSum(terms, name=f"{self.name}:{'+'.join(terms)}")

    def training_reward(self):
        """Weighted sum of the reward terms, naturalness as the AntiBERTy masked marginal of CDR-H3."""
        return self._reward("masked-marginal")

    @cached_property
    def evaluation_reward(self):
        """The same terms, naturalness as the AntiBERTy pseudo-log-likelihood of CDR-H3."""
        return self._reward("pseudo")

    # ---------------------------------------------------------- samples and metrics
    def check(self, seqs: list[str], where: str = "sample") -> None:
        """Every sequence is a VH of the task's antibody: right letters and length, framework unchanged."""
        a, b = self.h3
        heavy = self.antibody.heavy
        for i, s in enumerate(seqs, start=1):
            self.alphabet.validate(s, self.length, where=f"{where} {i}")
            for p, (x, y) in enumerate(zip(s, heavy)):
                if x != y and not a <= p < b:
                    raise SequenceError(f"{where} {i}: position {p + 1} is {x!r}, but only CDR-H3 (positions "
                                        f"{a + 1}-{b}) may differ from {self.antibody_name}'s VH ({y!r} there)")

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
        """Normalised Hamming distance between CDR-H3 loops over the m(m-1) ordered pairs."""
        return metrics.diversity([self.cdr_h3(s) for s in seqs])

    def recovery(self, seqs: list[str]) -> np.ndarray:
        """Fraction of CDR-H3 positions equal to the native loop, per sequence."""
        native = self.native_h3
        return np.array([sum(x == y for x, y in zip(self.cdr_h3(s), native)) / len(native) for s in seqs])

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
        h3 = [self.cdr_h3(s) for s in seqs]
        out.update({
            "log_likelihood_median": float(np.median(elbo)),
            "recovery": float(self.recovery(seqs).mean()),
            "diversity": metrics.diversity(h3) if len(seqs) > 1 else float("nan"),
            "uniqueness": metrics.uniqueness(h3),
            "n": len(seqs),
        })
        return out

    def _naturalness(self, seqs):
        return NaturalnessReward(self.h3, self.length, "pseudo")(seqs)

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
