"""Small-molecule tasks: a SELFIES masked diffusion model pretrained on MOSES, fine-tuned for
drug-likeness (`moses-qed`) or for docking to PARP1 (`parp1-docking`, the paper's task).

Sequences are SELFIES strings (every one decodes to a molecule; the all-padding string is the
empty molecule, counted invalid). Sample files are `.smi`: SMILES, QED, SA and the SELFIES.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path

import numpy as np
import torch

from vidd.chem.drawing import molecule_grid
from vidd.chem.metrics import decode_all, molecule_metrics, moses_training_set, reference_properties
from vidd.chem.molecules import PAD, mol_from_smiles, read_smi_selfies, write_smi
from vidd.chem.properties import internal_diversity, qed, sa_score
from vidd.core.config import ConfigError, option
from vidd.core.numerics import chunked
from vidd.core.runfolder import RunFolder
from vidd.core.seqio import read_table, write_table
from vidd.data.moses import pretraining_corpus
from vidd.diffusion.masked import MaskedDiffusion
from vidd.eval.figures import ReportFigure, plot_distributions
from vidd.eval.metrics import finite_median
from vidd.rewards.base import CachedReward, as_reward
from vidd.rewards.chem import DockingConfig, DockingReward, QEDReward
from vidd.rewards.executors import ExecutorConfig, ParallelReward
from vidd.tasks.base import Task, asset

#: MOSES molecules the committed model was pretrained on, a seeded subset (`vidd pretrain --set train_sequences`
#: takes another number; docs/tasks/molecules.md), and the held-out molecules of every pretraining
PRETRAIN_MOLECULES = 200_000
VALID_MOLECULES = 2_000
#: SELFIES positions; longer molecules are left out of pretraining (none in the subset)
MAX_TOKENS = 56
PRETRAINED = "moses/pretrained"  # the model folder under assets/
#: the best final samples a run's report draws
REPORT_TOP = 12
#: no molecule, in SMILES columns
NO_MOLECULE = "*"

log = logging.getLogger(__name__)


@dataclass
class MoleculeSettings:
    report_prior_samples: int = option(
        64, "samples of the pretrained model that a run's report draws (with the run's steps, seed 0) and scores with "
            "the training reward, to compare with the final samples' QED, SA and reward; kept in "
            "samples/pretrained.tsv (0: none)")

    def validate(self):
        if self.report_prior_samples < 0:
            raise ConfigError(f"report_prior_samples: must be >= 0 (0: none), got {self.report_prior_samples}")


def best_distinct(smiles: list[str], scores: np.ndarray, n: int) -> list[int]:
    """Indices of the `n` distinct molecules with the highest scores, best first (ties: the first listed); rows
    without a molecule or a finite score are left out."""
    ranked = sorted((i for i, s in enumerate(smiles) if s != NO_MOLECULE and np.isfinite(scores[i])),
                    key=lambda i: -scores[i])
    best: dict[str, int] = {}
    for i in ranked:
        best.setdefault(smiles[i], i)
        if len(best) == n:
            break
    return list(best.values())


class MoleculeTask(Task):
    length = MAX_TOKENS
    sample_suffix = ".smi"
    tradeoff_metrics = ("int_div", "nll_median")
    Settings = MoleculeSettings
    #: the training reward in the report's figures (None: it is QED, already drawn)
    reward_label: str | None = "training reward"
    #: the held-out reward in the legends of the best designs (None: the same as the training reward)
    eval_label: str | None = None

    def _corpus(self, size: int = 0) -> tuple[list[str], list[str]]:
        """(training, validation) SELFIES of MOSES molecules (`pretraining_corpus`) that fit the task: at most
        MAX_TOKENS tokens, all of them in the task's vocabulary (so that every model pretrained here generates
        the task's sequences; the committed model's vocabulary is that of its 200,000 molecules)."""
        train, valid = pretraining_corpus(size, PRETRAIN_MOLECULES, VALID_MOLECULES)
        kept = [[s for s in part if self.alphabet.fits(s, MAX_TOKENS)] for part in (train, valid)]
        left_out = len(train) + len(valid) - len(kept[0]) - len(kept[1])
        if left_out:
            log.warning("left out %d MOSES molecules longer than %d SELFIES tokens or with a token outside the "
                        "task's %d", left_out, MAX_TOKENS, self.alphabet.size)
        return kept[0], kept[1]

    def pretrain_sequences(self, size: int = 0):
        return self._corpus(size)

    def pretrained_model(self):
        return MaskedDiffusion.from_pretrained(asset(PRETRAINED))

    @cached_property
    def alphabet(self):
        """The pretrained model's SELFIES vocabulary (plus the `[nop]` padding token)."""
        alphabet = self.likelihood_model.alphabet
        if alphabet.pad != PAD:
            raise ValueError(f"{asset(PRETRAINED)} is not a SELFIES model (pad {alphabet.pad!r})")
        return alphabet

    # ------------------------------------------------------------ samples
    def read_samples(self, path) -> list[str]:
        seqs = read_smi_selfies(path)
        for i, s in enumerate(seqs, start=1):
            self.alphabet.validate(s, self.length, where=f"{path}: molecule {i}")
        return seqs

    def write_samples(self, path, seqs: list[str], scores: dict[str, list] | None = None) -> None:
        """SMILES, QED, SA, `scores` and the SELFIES, one molecule a line."""
        smiles = decode_all(seqs)
        write_smi(path, smiles, {**self._properties(smiles), **(scores or {}), "SELFIES": [s or PAD for s in seqs]})

    @staticmethod
    def _properties(smiles: list[str | None]) -> dict[str, list[float]]:
        """QED and SA of each molecule (NaN for no valid molecule)."""
        mols = [mol_from_smiles(s) if s else None for s in smiles]
        return {"QED": [qed(m) if m else float("nan") for m in mols],
                "SA": [sa_score(m) if m else float("nan") for m in mols]}

    def per_sequence(self, seqs: list[str], reward=None, likelihood_samples: int | None = 8, seed: int = 0) -> dict:
        """The default columns (`sequence` is the SELFIES) with the molecule's `smiles` (`*`: none), QED and SA."""
        columns = super().per_sequence(seqs, reward, likelihood_samples, seed)
        smiles = decode_all(seqs)
        return {"sequence": columns.pop("sequence"), "smiles": [s or NO_MOLECULE for s in smiles],
                **self._properties(smiles), **columns}

    # -------------------------------------------------------------- report
    def report_figures(self, folder: RunFolder, steps: int) -> list[ReportFigure]:
        """The best final samples (`REPORT_TOP` distinct molecules by training reward, as a grid image) and the QED,
        SA and training-reward distributions of the final samples against samples of the pretrained model."""
        if not folder.final_table_file.is_file():
            return []
        final = read_table(folder.final_table_file)
        folder.figures_dir.mkdir(exist_ok=True)
        top = self._top_designs(final, folder)
        return ([top] if top else []) + [self._distributions(final, self._prior_table(folder, steps), folder, steps)]

    def _top_designs(self, final: dict[str, list[str]], folder: RunFolder) -> ReportFigure | None:
        path = folder.figures_dir / "top_designs.png"
        drawn = self.draw_top_designs(final, path)
        if not drawn:
            return None
        return ReportFigure(
            f"The {drawn} best final samples", str(path.relative_to(folder.path)),
            f"The distinct valid molecules among the {len(final['smiles'])} final samples with the highest training "
            f"reward ({self.reward_label or 'QED'}), best first; under each its rank, reward"
            f"{f' ({self.eval_label}: the held-out evaluation)' if self.eval_label else ''}, QED and SA (lower: "
            f"easier to make).")

    def draw_top_designs(self, table: dict[str, list[str]], path: Path) -> int:
        """A grid image of the `REPORT_TOP` distinct valid molecules of a per-sequence table (columns smiles, QED,
        SA, reward and, if it has one, eval_reward) with the highest training reward, best first, each with its
        scores. Returns how many it drew (0: no valid molecule, no image)."""
        reward = np.array(table["reward"], dtype=float)
        best = best_distinct(table["smiles"], reward, REPORT_TOP)
        if not best:
            return 0
        held_out = np.array(table["eval_reward"], dtype=float) if "eval_reward" in table and self.eval_label else None
        legends = [f"#{rank} reward {reward[i]:.3g}" + (f", {self.eval_label} {held_out[i]:.3g}"
                                                         if held_out is not None else "")
                   + f"\nQED {float(table['QED'][i]):.2f}, SA {float(table['SA'][i]):.2f}"
                   for rank, i in enumerate(best, start=1)]
        molecule_grid([table["smiles"][i] for i in best], legends, path)
        return len(best)

    def score_table(self, seqs: list[str], known: dict[str, float] | None = None) -> dict[str, list]:
        """Per molecule: the SELFIES (`sequence`), SMILES (`*`: none), QED, SA and the training reward (NaN where it
        fails), a fresh reward's calls (for docking: seconds each) for each distinct molecule not in `known`
        (training-reward scores already at hand, e.g. a `vidd bench` cell's journal `reward_scores.tsv`)."""
        smiles = decode_all(seqs)
        known = dict(known or {})
        todo = list(dict.fromkeys(s for s in seqs if s not in known))
        if todo:
            with self.table_reward() as reward:
                known.update(zip(todo, reward(todo)))
        return {"sequence": seqs, "smiles": [s or NO_MOLECULE for s in smiles], **self._properties(smiles),
                "reward": [float(known[s]) for s in seqs]}

    def table_reward(self):
        """A fresh training reward for `score_table`, used in a `with` block."""
        return nullcontext(as_reward(self.training_reward()))

    def _prior_table(self, folder: RunFolder, steps: int) -> dict[str, list] | None:
        """`report_prior_samples` samples of the pretrained model with their `score_table`: samples/pretrained.tsv,
        drawn and scored once (scoring can be docking)."""
        n = self.settings.report_prior_samples
        path = folder.prior_table_file
        if n == 0:
            return None
        if path.is_file():
            table = read_table(path)
            if len(table["sequence"]) == n:
                return table
        tokens = self.likelihood_model.sample(n, steps, torch.Generator().manual_seed(0))
        write_table(path, self.score_table(self.alphabet.decode(tokens.cpu())))
        return read_table(path)

    def _distributions(self, final: dict[str, list[str]], prior: dict[str, list[str]] | None, folder: RunFolder,
                       steps: int) -> ReportFigure:
        columns = [("QED (higher: more drug-like)", "QED"), ("SA (lower: easier to make)", "SA")]
        columns += [(self.reward_label, "reward")] if self.reward_label else []
        sets = {"pretrained": prior, "fine-tuned": final} if prior else {"fine-tuned": final}

        def valid(table: dict[str, list[str]], column: str) -> np.ndarray:
            return np.array([v for v, s in zip(table[column], table["smiles"]) if s != NO_MOLECULE], dtype=float)

        path = folder.figures_dir / "distributions.png"
        plot_distributions([(title, {name: valid(t, column) for name, t in sets.items()}) for title, column in columns],
                           path)
        prior_note = (f"against {len(prior['smiles'])} samples of the pretrained model drawn for this report ({steps} "
                      f"steps, seed 0; samples/pretrained.tsv, task setting report_prior_samples) and scored with the "
                      f"same training reward" if prior else
                      "alone (task setting report_prior_samples is 0: no pretrained samples)")
        return ReportFigure(
            "Distributions of the final samples", str(path.relative_to(folder.path)),
            f"The run's {len(final['smiles'])} final samples {prior_note}; valid molecules only, histograms of unit "
            f"area. The fine-tuned samples' training reward is as the run recorded it: a molecule the reward failed "
            f"on shows at the run's penalty, while a pretrained sample the reward fails on is left out.")

    def diversity(self, seqs: list[str]) -> float:
        """Internal diversity (1 - mean Tanimoto, Morgan r=2) of the valid molecules."""
        return internal_diversity([mol_from_smiles(s) for s in decode_all(seqs) if s])

    # --------------------------------------------------------- evaluation
    def negative_log_likelihood(self, seqs: list[str], steps: int = 32, samples: int | None = 8,
                                seed: int = 0) -> np.ndarray:
        """-ELBO of the T-step chain under the pretrained model (an upper bound on the NLL), in nats."""
        return -self.log_likelihood(seqs, steps, samples, seed)

    @cached_property
    def reference(self):
        """10,000 MOSES test molecules and their properties: the naturalness reference."""
        return reference_properties(10_000)

    @cached_property
    def training_set(self) -> frozenset[str]:
        """All MOSES training SMILES, for novelty."""
        return moses_training_set()

    def evaluate(self, seqs: list[str], likelihood_samples: int | None = 8, with_fcd: bool = False,
                 seed: int = 0) -> dict:
        """Molecule metrics, the held-out reward and naturalness; keys in docs/metrics.md."""
        for i, s in enumerate(seqs, start=1):
            self.alphabet.validate(s, self.length, where=f"sample {i}")
        out = self.reward_metrics(seqs)
        out.update(molecule_metrics(seqs, self.reference, self.training_set, with_fcd=with_fcd))
        nll = self.negative_log_likelihood(seqs, samples=likelihood_samples, seed=seed)
        out["nll_median"] = float(np.median(nll))
        return out

    def reward_metrics(self, seqs: list[str]) -> dict:
        raise NotImplementedError

    def model_report(self, model, n_samples: int = 10_000, steps: int | None = None, seed: int = 0) -> dict:
        """MOSES metrics of `n_samples` samples (`steps` denoising steps, default 32) against the MOSES test set,
        FCD included, and the validation ELBO of the held-out corpus molecules."""
        steps = steps or 32
        gen = torch.Generator().manual_seed(seed)
        samples = self.alphabet.decode(model.sample(n_samples, steps, gen, batch_size=500).cpu())
        report = {"samples": n_samples, "steps": steps}
        report.update(molecule_metrics(samples, self.reference, self.training_set, with_fcd=True))
        _, valid = self._corpus()
        tokens = self.alphabet.encode(valid, self.length)
        with torch.no_grad():
            nelbo = chunked(lambda s: model.loss(s.to(model.device), gen).cpu(), tokens, size=500)
        report["valid_nelbo_bits_per_token"] = float(nelbo.mean() / self.length / np.log(2))
        report["valid_nelbo_nats_per_molecule"] = float(nelbo.mean())
        return report


class MosesQED(MoleculeTask):
    """Raise drug-likeness (QED) of MOSES-like molecules; cheap (1 ms per molecule), used in tests."""

    name = "moses-qed"
    table_metrics = ("QED", "SA", "nll_median", "validity", "uniqueness", "novelty", "int_div")
    reward_label = None

    def training_reward(self):
        return QEDReward()

    @cached_property
    def evaluation_reward(self):
        """QED is an exact property, not a learned oracle: the same function evaluates."""
        return QEDReward()

    def reward_metrics(self, seqs):
        return {"qed_median": finite_median(self.evaluation_reward(seqs))}


class PARP1Docking(MoleculeTask):
    """The paper's molecule task: maximise -Vina score against PARP1 (dockstring's receptor and box).

    Training docks at exhaustiveness 1 (seed 0); evaluation re-docks at exhaustiveness 8 with
    another seed, so a molecule that only fooled the cheap search does not count."""

    name = "parp1-docking"
    table_metrics = ("docking_median", "docking_top10", "docking_failures", "QED", "SA", "nll_median", "validity",
                     "uniqueness", "novelty", "int_div")
    target = "PARP1"
    reward_label = "docking score, -Vina kcal/mol (training: exhaustiveness 1)"
    eval_label = "exh. 8"

    def training_reward(self):
        return DockingReward(DockingConfig(target=self.target, exhaustiveness=1, seed=0))

    def table_reward(self):
        """Docking on a process pool (one worker per core): the report scores its prior samples in minutes."""
        return ParallelReward(self.training_reward_factory(), ExecutorConfig(kind="process", batch_size=1, retries=1))

    @cached_property
    def evaluation_reward(self):
        """Seeded docking is deterministic, so each molecule is re-docked once (minutes each on 2 cores) however
        often an evaluation asks for it (the per-molecule table and the metrics of a final evaluation)."""
        factory = partial(DockingReward, DockingConfig(target=self.target, exhaustiveness=8, seed=1))
        return CachedReward(ParallelReward(factory, ExecutorConfig(kind="process", batch_size=1, retries=1)))

    def reward_metrics(self, seqs):
        values = self.evaluation_reward(seqs)
        finite = np.sort(values[np.isfinite(values)])[::-1]
        top = finite[: max(1, len(finite) // 10)]
        return {
            "docking_median": finite_median(finite),
            "docking_top10": float(top.mean()) if len(finite) else float("nan"),
            "docking_failures": int(len(values) - len(finite)),
        }
