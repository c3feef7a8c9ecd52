"""Cell-type classifier oracles for `dhs-hepg2` (as in DRAKES).

Two small CNNs classify a 200-bp sequence into one of the four DHS cell types. Following
DRAKES, one oracle (trained on one half of the training split) is the reward that methods
fine-tune against, and a second, held-out oracle (the other half, another seed) is the one
that evaluates them, so that reward hacking of the first oracle shows up as disagreement.

The reward is the HepG2 log-odds, log p(HepG2) - log(1 - p(HepG2)), computed stably as
logit_HepG2 - logsumexp(other logits). The classifier takes (relaxed) one-hot input of shape
(B, L, 4), so the reward is differentiable with respect to the sequence (for DRAKES).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from vidd.core import config as cfg
from vidd.core.alphabets import DNA
from vidd.data.dhs import CELL_TYPES, SEQUENCE_LENGTH
from vidd.core.errors import UserError
from vidd.core.numerics import chunked
from vidd.core.safefiles import CONFIG_FILE, read_folder, write_folder
from vidd.rewards.base import DifferentiableReward

FORMAT = "vidd-celltype-oracle-2"
#: `format` of vidd 0.1's pickled `.pt` oracles (converted by `vidd convert-checkpoint`)
LEGACY_FORMAT = "vidd-celltype-oracle-1"
PARTITION_SEED = 12345  # fixed: the two halves of the training split must never change


class OracleError(UserError, ValueError):
    pass


@dataclasses.dataclass
class OracleConfig:
    width: int = cfg.option(128, "channels of every convolution layer")
    kernel: int = cfg.option(15, "kernel size of the first convolution (later layers use `kernel2`)")
    kernel2: int = cfg.option(5, "kernel size of the second and later convolutions")
    layers: int = cfg.option(3, "number of convolution blocks (conv, batch norm, ReLU, max-pool)")
    pool: int = cfg.option(4, "max-pool width after each convolution block except the last")
    dropout: float = cfg.option(0.2, "dropout before the classification head")
    epochs: int = cfg.option(8, "maximum number of passes over the training sequences")
    patience: int = cfg.option(3, "stop after this many epochs without a better validation HepG2 AUROC (0 = never)")
    batch_size: int = cfg.option(128, "training batch size")
    lr: float = cfg.option(2e-3, "peak AdamW learning rate (one-cycle: 10% warm-up, cosine decay over `epochs`)")
    weight_decay: float = cfg.option(1e-2, "AdamW weight decay")
    rc_augment: bool = cfg.option(True, "randomly reverse-complement training sequences")
    seed: int = cfg.option(0, "seed for initialisation, batch order and augmentation")
    half: int = cfg.option(
        -1, "train on half 0 or 1 of a fixed random partition (seed 12345) of the training split; -1 = all")
    threads: int = cfg.option(
        1, "torch CPU threads (0 = torch's default); 1 is much faster than 2 when another job shares the CPU")
    max_seconds: float = cfg.option(330.0, "stop training after this many seconds, keeping the best epoch (0 = no limit)")

    def validate(self) -> None:
        if self.half not in (-1, 0, 1):
            raise cfg.ConfigError(f"half: must be 0, 1 or -1 (all), got {self.half}")
        for name in ("width", "kernel", "kernel2", "layers", "pool", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise cfg.ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise cfg.ConfigError(f"dropout: must be in [0, 1), got {self.dropout}")
        if self.lr <= 0:
            raise cfg.ConfigError(f"lr: must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.patience < 0 or self.threads < 0 or self.max_seconds < 0:
            raise cfg.ConfigError("weight_decay, patience, threads, max_seconds: must be >= 0")


# --------------------------------------------------------------------------- model


class CellTypeClassifier(nn.Module):
    """(B, L, 4) one-hot or relaxed one-hot (float) -> (B, 4) logits over CELL_TYPES."""

    def __init__(self, config: OracleConfig | None = None, cell_types=CELL_TYPES, length: int | None = None):
        super().__init__()
        self.config = config or OracleConfig()
        self.cell_types = tuple(cell_types)
        self.length = length
        c = self.config
        blocks = []
        channels = DNA.size
        for i in range(c.layers):
            k = c.kernel if i == 0 else c.kernel2
            blocks += [nn.Conv1d(channels, c.width, k, padding=k // 2), nn.BatchNorm1d(c.width), nn.ReLU()]
            if i < c.layers - 1 and c.pool > 1:
                blocks.append(nn.MaxPool1d(c.pool, ceil_mode=True))
            channels = c.width
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Dropout(c.dropout), nn.Linear(2 * c.width, c.width), nn.ReLU(),
            nn.Dropout(c.dropout), nn.Linear(c.width, len(self.cell_types)),
        )

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        if onehot.dim() != 3 or onehot.shape[-1] != DNA.size:
            raise ValueError(f"expected (batch, length, {DNA.size}) one-hot input, got shape {tuple(onehot.shape)}")
        h = self.features(onehot.float().transpose(1, 2))  # (B, C, L')
        pooled = torch.cat([h.amax(dim=2), h.mean(dim=2)], dim=1)
        return self.head(pooled)


def one_hot(seqs: list[str], length: int | None = None) -> torch.Tensor:
    """Validated DNA strings -> (N, L, 4) float one-hot (raises SequenceError on bad input)."""
    tokens = DNA.encode(list(seqs), length)
    return F.one_hot(tokens, DNA.size).float()


def reverse_complement_onehot(x: torch.Tensor) -> torch.Tensor:
    """Reverse complement of (B, L, 4) one-hot over ACGT: flip positions and A<->T, C<->G."""
    return torch.flip(x, dims=(1, 2))


def target_log_odds(logits: torch.Tensor, target: int) -> torch.Tensor:
    """log p(target) - log(1 - p(target)) = logit_target - logsumexp(other logits), stably."""
    others = torch.cat([logits[:, :target], logits[:, target + 1:]], dim=1)
    return logits[:, target] - torch.logsumexp(others, dim=1)


@torch.no_grad()
def predict_logits(classifier: CellTypeClassifier, seqs: list[str], batch_size: int = 512,
                   length: int | None = None) -> torch.Tensor:
    was_training = classifier.training
    classifier.eval()
    try:
        return chunked(lambda s: classifier(one_hot(s, length)), seqs, size=batch_size,
                       empty=torch.empty(0, len(classifier.cell_types)))
    finally:
        classifier.train(was_training)


# --------------------------------------------------------------------------- metrics


def auroc(scores, positives) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count one half)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    positives = np.asarray(positives, dtype=bool).reshape(-1)
    if scores.shape != positives.shape:
        raise ValueError(f"auroc: {scores.shape[0]} scores but {positives.shape[0]} labels")
    n_pos = int(positives.sum())
    n_neg = positives.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classifier_metrics(classifier: CellTypeClassifier, seqs: list[str], labels, target: str = "HepG2") -> dict:
    labels = np.asarray(labels)
    t = classifier.cell_types.index(target)
    logits = predict_logits(classifier, seqs)
    log_odds = target_log_odds(logits, t).numpy()
    return {
        f"auroc_{target}": auroc(log_odds, labels == t),
        "accuracy": float((logits.argmax(1).numpy() == labels).mean()) if len(labels) else float("nan"),
        "loss": float(F.cross_entropy(logits, torch.as_tensor(labels, dtype=torch.long))) if len(labels) else float("nan"),
    }


# --------------------------------------------------------------------------- training


def half_indices(n: int, half: int) -> np.ndarray:
    """Indices of half 0 or 1 of a fixed random partition (seed 12345) of range(n); -1 = all."""
    if half == -1:
        return np.arange(n)
    if half not in (0, 1):
        raise OracleError(f"half must be 0, 1 or -1, got {half}")
    perm = np.random.default_rng(PARTITION_SEED).permutation(n)
    return np.sort(perm[: n // 2] if half == 0 else perm[n // 2:])


def train_oracle(config: OracleConfig, train_seqs: list[str], train_labels, valid_seqs: list[str], valid_labels,
                 out_path: str | Path | None, log: Callable[[str], None] = print,
                 test: tuple[list[str], np.ndarray] | None = None, target: str = "HepG2") -> CellTypeClassifier:
    """Train a classifier on `config.half` of the training sequences; keep the epoch with the best
    validation AUROC of `target` vs rest; save it to `out_path` (atomically) and return it.

    `test=(seqs, labels)` only adds test metrics to the saved `metrics` (never used for selection).
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    train_labels = np.asarray(train_labels, dtype=np.int64)
    valid_labels = np.asarray(valid_labels, dtype=np.int64)
    if len(train_seqs) != len(train_labels) or len(valid_seqs) != len(valid_labels):
        raise OracleError("train_oracle: sequences and labels differ in number")
    if not len(train_seqs) or not len(valid_seqs):
        raise OracleError("train_oracle: need at least one training and one validation sequence")
    n_classes = len(CELL_TYPES)
    for name, lab in (("training", train_labels), ("validation", valid_labels)):
        if lab.min() < 0 or lab.max() >= n_classes:
            raise OracleError(f"train_oracle: {name} labels must lie in 0..{n_classes - 1}")
    idx = half_indices(len(train_seqs), config.half)
    length = len(train_seqs[0])
    x_train = one_hot([train_seqs[i] for i in idx], length)
    y_train = torch.as_tensor(train_labels[idx])
    x_valid_seqs = list(valid_seqs)
    DNA.encode(x_valid_seqs, length)  # validate early, with a clear error
    log(f"oracle: {len(idx)} training sequences (half={config.half}), {len(valid_seqs)} validation, "
        f"seed={config.seed}")

    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = CellTypeClassifier(config, CELL_TYPES, length)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(idx) / config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=steps_per_epoch * config.epochs, pct_start=0.1,
        anneal_strategy="cos")

    best = {"auroc": -1.0, "epoch": 0, "state": None, "valid": None}
    history = []
    start = time.monotonic()
    stale = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        perm = torch.randperm(len(idx), generator=gen)
        total, count = 0.0, 0
        for b in range(0, len(idx), config.batch_size):
            sel = perm[b:b + config.batch_size]
            xb, yb = x_train[sel], y_train[sel]
            if config.rc_augment:
                flip = torch.rand(len(sel), generator=gen) < 0.5
                xb = torch.where(flip[:, None, None], reverse_complement_onehot(xb), xb)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(sel)
            count += len(sel)
        valid = classifier_metrics(model, x_valid_seqs, valid_labels, target)
        elapsed = time.monotonic() - start
        history.append({"epoch": epoch, "train_loss": total / count, **{f"valid_{k}": v for k, v in valid.items()},
                        "seconds": elapsed})
        improved = valid[f"auroc_{target}"] > best["auroc"]
        if improved:
            best = {"auroc": valid[f"auroc_{target}"], "epoch": epoch,
                    "state": copy.deepcopy(model.state_dict()), "valid": valid}
            stale = 0
        else:
            stale += 1
        log(f"epoch {epoch}/{config.epochs}  train loss {total / count:.4f}  valid loss {valid['loss']:.4f}  "
            f"valid acc {valid['accuracy']:.3f}  valid {target} AUROC {valid[f'auroc_{target}']:.4f}"
            f"{'  *' if improved else ''}  ({elapsed:.0f}s)")
        if config.patience and stale >= config.patience:
            log(f"early stop: no better validation AUROC for {stale} epochs")
            break
        if config.max_seconds and elapsed >= config.max_seconds and epoch < config.epochs:
            log(f"time limit: stopping after {elapsed:.0f}s (max_seconds={config.max_seconds:g})")
            break

    model.load_state_dict(best["state"])
    model.zero_grad(set_to_none=True)
    model.eval()
    metrics = {
        "best_epoch": best["epoch"], "epochs_run": len(history), "train_seconds": time.monotonic() - start,
        "n_train": int(len(idx)), "n_valid": len(valid_seqs), "n_parameters": n_params,
        **{f"valid_{k}": v for k, v in best["valid"].items()}, "history": history,
    }
    if test is not None:
        tm = classifier_metrics(model, list(test[0]), test[1], target)
        metrics.update({f"test_{k}": v for k, v in tm.items()})
    model.metrics = metrics
    log(f"best epoch {best['epoch']}: valid {target} AUROC {best['auroc']:.4f}, "
        f"valid accuracy {best['valid']['accuracy']:.3f}")
    if out_path is not None:
        save_classifier(model, out_path, metrics)
    return model


def save_classifier(model: CellTypeClassifier, path: str | Path, metrics: dict | None = None) -> None:
    """A model folder at `path`: config.json (the architecture, cell types, metrics) + model.safetensors."""
    write_folder(path, {
        "format": FORMAT,
        "config": cfg.to_dict(model.config),
        "cell_types": list(model.cell_types),
        "length": model.length,
        "metrics": metrics if metrics is not None else getattr(model, "metrics", {}),
    }, model.state_dict())


def load_classifier(path: str | Path) -> CellTypeClassifier:
    """The classifier of a folder written by `save_classifier` (its weights checked against their sha256)."""
    path = Path(path)
    if not path.exists():
        raise OracleError(f"oracle not found: {path}")
    if not path.is_dir():
        raise OracleError(f"{path}: an oracle is a folder ({CONFIG_FILE} + model.safetensors); convert a vidd 0.1 "
                          f"`.pt` oracle once with `vidd convert-checkpoint OLD NEW_DIR --trust-checkpoint`")
    config, tensors = read_folder(path)
    return classifier_from_state({**config, "state_dict": tensors}, str(path))


def classifier_from_state(payload: dict, where: str) -> CellTypeClassifier:
    """The classifier a config with its `state_dict` describes (a folder's contents or a vidd 0.1 payload)."""
    if payload.get("format") not in (FORMAT, LEGACY_FORMAT):
        raise OracleError(f"{where}: not a cell-type oracle (format {payload.get('format')!r}, expected {FORMAT!r})")
    config = cfg.from_dict(OracleConfig, payload["config"], where=f"{where}: config")
    model = CellTypeClassifier(config, payload["cell_types"], payload.get("length"))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise OracleError(f"{where}: weights do not match the saved config: {e}") from e
    model.metrics = payload.get("metrics", {})
    model.eval()
    return model


# --------------------------------------------------------------------------- reward


class CellTypeOracleReward(DifferentiableReward):
    """Log-odds that a classifier assigns a sequence to `target` (default HepG2)."""

    higher_is_better = True
    cost_hint = 1e-4

    def __init__(self, classifier: CellTypeClassifier | str | Path, target: str = "HepG2",
                 batch_size: int = 512, length: int | None = SEQUENCE_LENGTH):
        super().__init__()
        if isinstance(classifier, (str, Path)):
            classifier = load_classifier(classifier)
        if target not in classifier.cell_types:
            raise OracleError(f"unknown cell type {target!r}; the oracle knows {list(classifier.cell_types)}")
        self.classifier = classifier.eval()
        self.classifier.zero_grad(set_to_none=True)
        for p in self.classifier.parameters():
            p.requires_grad_(False)
        self.target = target
        self.target_index = classifier.cell_types.index(target)
        self.batch_size = batch_size
        self.length = classifier.length if classifier.length is not None else length
        self.name = f"oracle:{target}-log-odds"

    def train(self, mode: bool = True):  # the oracle is always evaluated in eval mode
        return super().train(False)

    def _logits(self, seqs: list[str]) -> torch.Tensor:
        return predict_logits(self.classifier, list(seqs), self.batch_size, self.length)

    def score(self, seqs: list[str]) -> np.ndarray:
        return target_log_odds(self._logits(seqs), self.target_index).numpy().astype(np.float64)

    def probabilities(self, seqs: list[str]) -> np.ndarray:
        return torch.softmax(self._logits(seqs), dim=1).numpy().astype(np.float64)

    def score_onehot(self, onehot: torch.Tensor) -> torch.Tensor:
        """(B, L, 4) relaxed one-hot (a 5th mask column, if present, is dropped) -> (B,) log-odds."""
        if onehot.dim() == 3 and onehot.shape[-1] == DNA.size + 1:
            onehot = onehot[..., : DNA.size]
        self.classifier.eval()
        return target_log_odds(self.classifier(onehot), self.target_index)

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.score_onehot(onehot)


# --------------------------------------------------------------------------- report


def oracle_report(classifier_a: CellTypeClassifier, classifier_b: CellTypeClassifier, test_seqs: list[str],
                  test_labels, target: str = "HepG2") -> dict:
    """Each oracle's test AUROC (target vs rest) and 4-class accuracy, and how much the two agree."""
    labels = np.asarray(test_labels)
    out: dict = {"target": target, "n_test": len(test_seqs)}
    scores = []
    for key, clf in (("oracle_a", classifier_a), ("oracle_b", classifier_b)):
        t = clf.cell_types.index(target)
        logits = predict_logits(clf, list(test_seqs))
        s = target_log_odds(logits, t).numpy().astype(np.float64)
        scores.append(s)
        out[key] = {
            f"auroc_{target}": auroc(s, labels == t),
            "accuracy": float((logits.argmax(1).numpy() == labels).mean()),
            f"fraction_called_{target}": float((s > 0).mean()),
        }
    a, b = scores
    call_a, call_b = a > 0, b > 0  # log-odds > 0  <=>  p(target) > 0.5
    out["agreement"] = {
        "pearson_log_odds": float(stats.pearsonr(a, b)[0]),
        "spearman_log_odds": float(stats.spearmanr(a, b)[0]),
        f"same_call_{target}": float((call_a == call_b).mean()),
        f"both_call_{target}": float((call_a & call_b).mean()),
    }
    return out
