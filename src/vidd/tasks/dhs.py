"""`dhs-hepg2`: design 200-bp DNA that a held-out HepG2 cell-type oracle calls HepG2-specific.

The offline counterpart of the paper's DRAKES enhancer benchmark: a masked diffusion model
pretrained on real DHS sites of four cell types, a training oracle (HepG2 log-odds of a CNN
cell-type classifier) to fine-tune against, and a second oracle trained on the other half of
the training split with another seed to evaluate, so reward hacking shows.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch

from vidd.core.alphabets import DNA
from vidd.core.numerics import chunked
from vidd.data.dhs import SEQUENCE_LENGTH, load_dhs
from vidd.diffusion.masked import MaskedDiffusion
from vidd.eval import metrics
from vidd.eval.markov import MarkovChain
from vidd.rewards.motifs import MotifScanner
from vidd.rewards.oracle import CellTypeOracleReward
from vidd.tasks.base import Task, asset

class DHSHepG2(Task):
    name = "dhs-hepg2"
    alphabet = DNA
    length = SEQUENCE_LENGTH
    likelihood_steps = 128
    table_metrics = ("pred_activity_median", "hepg2_acc", "kmer3_corr", "jaspar_corr", "log_likelihood_median",
                     "diversity", "uniqueness")
    tradeoff_metrics = ("diversity", "kmer3_corr")

    def pretrain_sequences(self):
        data = load_dhs()
        return data["train"].sequences, data["valid"].sequences

    def pretrained_model(self) -> MaskedDiffusion:
        return MaskedDiffusion.from_pretrained(asset(f"{self.name}/pretrained"))

    def _oracle(self, which: str):
        return CellTypeOracleReward(asset(f"{self.name}/oracle-{which}"), target="HepG2")

    def training_reward(self):
        """HepG2 log-odds of the training oracle."""
        return self._oracle("train")

    @cached_property
    def evaluation_reward(self):
        """HepG2 log-odds of the held-out evaluation oracle."""
        return self._oracle("eval")

    @cached_property
    def reference(self) -> list[str]:
        """Real HepG2-specific DHS sites of the test split (chr1): the naturalness reference."""
        return load_dhs()["test"].of_cell_type("HepG2")

    @cached_property
    def motif_scanner(self):
        return MotifScanner()

    @cached_property
    def _reference_motif_counts(self):
        return self.motif_scanner.counts(self.reference)

    def evaluate(self, seqs: list[str], likelihood_steps: int = 128, likelihood_samples: int | None = 16,
                 seed: int = 0) -> dict:
        """The metrics of Table 1 (DNA columns) plus naturalness; keys documented in docs/metrics.md."""
        for i, s in enumerate(seqs):
            self.alphabet.validate(s, self.length, where=f"sample {i + 1}")
        log_odds = self.evaluation_reward(seqs)  # p(HepG2) > 0.5 exactly when the log-odds are > 0
        loglik = self.log_likelihood(seqs, likelihood_steps, likelihood_samples, seed)
        return {
            "pred_activity_median": float(np.median(log_odds)),
            "hepg2_acc": float(np.mean(log_odds > 0)),
            "kmer3_corr": metrics.kmer_corr(seqs, self.reference, k=3),
            "jaspar_corr": metrics.motif_corr(self.motif_scanner.counts(seqs), self._reference_motif_counts),
            "log_likelihood_median": float(np.median(loglik)),
            "diversity": metrics.diversity(seqs),
            "uniqueness": metrics.uniqueness(seqs),
            "n": len(seqs),
        }

    def sample_metrics(self, seqs: list[str]) -> dict[str, float]:
        """3-mer correlation with the reference set, for every evaluation during training."""
        return {"kmer3_corr": metrics.kmer_corr(seqs, self.reference, k=3)}

    def model_report(self, model: MaskedDiffusion, n_samples: int = 1000, steps: int = 128,
                     elbo_draws: int = 4, seed: int = 0) -> dict:
        """Quality of a pretrained model on the held-out test split (chr1), next to a 5th-order Markov chain.

        - test_nelbo_bits_per_base: continuous-time MDLM negative ELBO (an upper bound on the model's
          negative log-likelihood), mean of `elbo_draws` Monte Carlo draws per test sequence, in bits per base;
        - markov5_test_bits_per_base: exact held-out log-loss of a 5th-order Markov chain fitted on the
          same training split;
        - kmer3_corr_vs_test: Pearson correlation of 3-mer counts of `n_samples` samples (`steps`
          steps) with those of the whole test split.
        """
        data = load_dhs()
        test = data["test"].sequences
        gen = torch.Generator().manual_seed(seed)
        tokens = self.alphabet.encode(test, self.length)
        with torch.no_grad():
            draws = torch.stack([chunked(lambda s: model.loss(s.to(model.device), gen).cpu(), tokens, size=512)
                                 for _ in range(elbo_draws)])
        per_seq_bits = draws.mean(0) / self.length / np.log(2)
        samples = self.alphabet.decode(model.sample(n_samples, steps, gen, batch_size=250).cpu())
        markov = MarkovChain(5).fit(data["train"].sequences)
        return {
            "test_sequences": len(test),
            "test_nelbo_bits_per_base": float(per_seq_bits.mean()),
            "test_nelbo_bits_per_base_stderr": float(per_seq_bits.std() / np.sqrt(len(test))),
            "markov5_test_bits_per_base": markov.log_loss_bits(test),
            "kmer3_corr_vs_test": metrics.kmer_corr(samples, test, k=3),
            "samples": n_samples, "steps": steps, "sample_diversity": metrics.diversity(samples),
        }
