"""Assay oracles: a model of a lab's screen, trained on its labelled sequences (`vidd train-oracle --data`),
used as a training or evaluation reward (docs/oracles.md).

Labels are binary (a sorted or thresholded screen: 0/1) or real-valued (a measurement). Models:
- `cnn`: a small 1-D convolutional network on one-hot sequences with masked max + mean pooling; a
  classifier (log-odds of label 1) for binary labels, a regressor (in label units) for real ones;
- `ridge`: ridge regression on one-hot or k-mer features (any labels, read as numbers);
- `logistic`: L2-penalised logistic regression on the same features (binary labels; log-odds).

Sequences of any alphabet vidd knows (DNA, RNA, protein, SELFIES, custom:LETTERS) and of fixed or variable
length:
one-hot inputs hold the longest training sequence, shorter ones padded at the end with all-zero positions
(pad tokens, such as SELFIES' `[nop]`, count as padding); k-mer counts need no padding. A sequence the
oracle cannot read (a token outside its alphabet, longer than its input, empty) scores NaN.

A held-out split (stratified for binary labels) is scored in the training report: AUROC for binary
labels, calibration (Brier score, expected calibration error, reliability bins) for classifiers,
Spearman / Pearson / RMSE for regressors. An ensemble trains each member on a bootstrap resample of the
training part with its own seed; the reward is mean - k * std over the members (k = `pessimism`), the
usual guard against designs that exploit the oracle where it has no data.

The file is a folder without pickle: `oracle.json` (format, alphabet, input length, features, label
statistics, config, training report, source data) and `weights.safetensors` (every member's tensors,
named `member{i}.{parameter}`; ridge and logistic coefficients are tensors too).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from scipy import stats
from torch import nn

from vidd.chem.molecules import selfies_alphabet
from vidd.core import config as cfg
from vidd.core.alphabets import LETTER_ALPHABETS, Alphabet, SequenceError, named
from vidd.core.atomic import atomic_open
from vidd.core.config import ConfigError, option
from vidd.core.errors import UserError
from vidd.data.assays import LabelledSequences
from vidd.rewards.base import Reward
from vidd.rewards.oracle import auroc

FORMAT = "vidd-assay-oracle-1"
SPEC_FILE = "oracle.json"
WEIGHTS_FILE = "weights.safetensors"
#: k-mer feature vectors longer than this are refused (dense features; use one-hot or a smaller k)
MAX_KMER_FEATURES = 2 ** 14
ALPHABET_NAMES = (*LETTER_ALPHABETS, "SELFIES", "custom:LETTERS")
CALIBRATION_BINS = 10


class AssayOracleError(UserError, ValueError):
    pass


@dataclasses.dataclass
class AssayOracleConfig:
    model: Literal["cnn", "ridge", "logistic"] = option(
        "cnn", "cnn: a small convolutional network on one-hot sequences (a classifier for binary labels, a "
               "regressor for real ones); ridge: ridge regression (labels read as numbers); logistic: L2-penalised "
               "logistic regression (binary labels)")
    features: Literal["onehot", "kmer"] = option(
        "onehot", "features of ridge and logistic: one-hot per position (shorter sequences padded with all-zero "
                  "positions) or the counts of every k-mer (any length); the CNN always reads one-hot")
    k: int = option(3, "k of the k-mer features")
    l2: float = option(1.0, "ridge and logistic: L2 penalty lambda (loss summed over the training sequences + "
                            "lambda * sum(w^2))")
    labels: Literal["auto", "binary", "real"] = option(
        "auto", "label type: binary (0/1), real, or auto (binary when every label is 0 or 1)")
    test_fraction: float = option(0.2, "held-out share of the sequences (stratified for binary labels): scored in "
                                       "the report, never trained on")
    valid_fraction: float = option(0.1, "CNN: share of the training part that picks the best epoch")
    ensemble: int = option(1, "ensemble members; with more than one, each trains on a bootstrap resample of the "
                              "training part with its own seed (their spread feeds the pessimism of an oracle reward)")
    seed: int = option(0, "seed of the split, the resamples and the CNN initialisation")
    width: int = option(64, "CNN channels of each convolution")
    kernel: int = option(5, "CNN kernel size")
    layers: int = option(2, "CNN convolution layers")
    dropout: float = option(0.1, "CNN dropout before the head")
    epochs: int = option(40, "CNN maximum epochs")
    patience: int = option(5, "CNN: stop after this many epochs without a lower validation loss (0: never)")
    batch_size: int = option(64, "CNN batch size")
    lr: float = option(2e-3, "CNN AdamW learning rate")
    weight_decay: float = option(1e-4, "CNN AdamW weight decay")
    threads: int = option(0, "torch CPU threads (0: torch default)")

    def validate(self) -> None:
        for name in ("k", "ensemble", "width", "kernel", "layers", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not 0 < self.test_fraction < 1 or not 0 < self.valid_fraction < 1:
            raise ConfigError("test_fraction, valid_fraction: must lie strictly between 0 and 1")
        if self.l2 <= 0 or self.lr <= 0:
            raise ConfigError("l2, lr: must be > 0")
        if not 0 <= self.dropout < 1 or self.weight_decay < 0 or self.patience < 0 or self.threads < 0:
            raise ConfigError("dropout must lie in [0, 1); weight_decay, patience, threads must be >= 0")
        if self.model == "cnn" and self.features != "onehot":
            raise ConfigError(f"features: the CNN reads one-hot sequences, got {self.features!r} (k-mer features "
                              f"are for --model ridge or logistic)")


def data_alphabet(name: str, seqs: list[str]) -> Alphabet:
    """The alphabet `name` names (`vidd.core.alphabets.named`: DNA, RNA, protein, custom:LETTERS; SELFIES: the
    tokens of `seqs` and the `[nop]` pad)."""
    return selfies_alphabet(seqs) if name.lower() == "selfies" else named(name)


# ------------------------------------------------------------------ inputs
class Encoder:
    """Sequences -> model inputs: padded one-hot (N, length, V) or k-mer counts (N, V^k), float32."""

    def __init__(self, alphabet: Alphabet, length: int, features: str, k: int):
        self.alphabet, self.length, self.features, self.k = alphabet, length, features, k
        self.index = {t: i for i, t in enumerate(alphabet.letters) if t != alphabet.pad}
        self.channels = len(self.index)
        if features == "kmer" and self.channels ** k > MAX_KMER_FEATURES:
            raise AssayOracleError(f"k-mer features: {self.channels}^{k} = {self.channels ** k} features, more than "
                                   f"{MAX_KMER_FEATURES}; use a smaller k or --features onehot")

    @property
    def size(self) -> int:
        """Length of a flat feature vector."""
        return self.length * self.channels if self.features == "onehot" else self.channels ** self.k

    def tokens(self, seq: str) -> list[int] | None:
        """Token indices (pads dropped), or None for a sequence the oracle cannot read."""
        tokens = [t for t in self.alphabet.split(seq) if t != self.alphabet.pad]
        if not tokens or any(t not in self.index for t in tokens):
            return None
        if self.features == "onehot" and len(tokens) > self.length:
            return None
        return [self.index[t] for t in tokens]

    def encode(self, rows: list[list[int]]) -> torch.Tensor:
        if self.features == "kmer":
            out = torch.zeros(len(rows), self.size)
            for i, row in enumerate(rows):
                codes = np.zeros(max(0, len(row) - self.k + 1), dtype=np.int64)
                for j in range(self.k):
                    codes = codes * self.channels + np.asarray(row[j:len(row) - self.k + 1 + j], dtype=np.int64)
                out[i] = torch.from_numpy(np.bincount(codes, minlength=self.size).astype(np.float32))
            return out
        out = torch.zeros(len(rows), self.length, self.channels)
        for i, row in enumerate(rows):
            out[i, torch.arange(len(row)), torch.tensor(row, dtype=torch.long)] = 1.0
        return out


# ------------------------------------------------------------------ models
class LinearModel(nn.Module):
    """w . x + b on flat features (ridge, logistic)."""

    def __init__(self, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(size, dtype=torch.float64))
        self.bias = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1).double() @ self.weight + self.bias


class ConvModel(nn.Module):
    """(B, L, V) padded one-hot -> (B,): convolutions, max and mean over the real positions, a small head."""

    def __init__(self, channels: int, width: int, kernel: int, layers: int, dropout: float):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(channels if i == 0 else width, width, kernel, padding="same")
                                   for i in range(layers))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * width, width), nn.ReLU(), nn.Linear(width, 1))

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        real = (onehot.sum(-1) > 0).unsqueeze(1)  # (B, 1, L)
        h = onehot.float().transpose(1, 2)
        for conv in self.convs:
            h = F.relu(conv(h)).masked_fill(~real, 0.0)
        top = h.masked_fill(~real, float("-inf")).amax(-1)
        mean = h.sum(-1) / real.sum(-1).clamp_min(1)
        return self.head(torch.cat([top, mean], dim=1)).squeeze(-1)


def build_model(config: AssayOracleConfig, encoder: Encoder) -> nn.Module:
    if config.model == "cnn":
        return ConvModel(encoder.channels, config.width, config.kernel, config.layers, config.dropout)
    return LinearModel(encoder.size)


def fit_ridge(x: torch.Tensor, y: torch.Tensor, l2: float) -> LinearModel:
    """argmin sum((y - Xw - b)^2) + l2 sum(w^2) in closed form (the dual when there are more features than rows)."""
    x = x.reshape(len(x), -1).double()
    y = y.double()
    x_mean, y_mean = x.mean(0), y.mean()
    xc, yc = x - x_mean, y - y_mean
    n, d = xc.shape
    if d <= n:
        w = torch.linalg.solve(xc.T @ xc + l2 * torch.eye(d, dtype=xc.dtype), xc.T @ yc)
    else:
        w = xc.T @ torch.linalg.solve(xc @ xc.T + l2 * torch.eye(n, dtype=xc.dtype), yc)
    model = LinearModel(d)
    with torch.no_grad():
        model.weight.copy_(w)
        model.bias.copy_(y_mean - x_mean @ w)
    return model


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float) -> LinearModel:
    """argmin sum of the logistic losses + l2 sum(w^2) (L-BFGS, full batch, float64)."""
    x = x.reshape(len(x), -1).double()
    model = LinearModel(x.shape[1])
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x), y.double(), reduction="sum") + l2 * model.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return model


def fit_cnn(config: AssayOracleConfig, encoder: Encoder, x: torch.Tensor, y: torch.Tensor, x_valid: torch.Tensor,
            y_valid: torch.Tensor, binary: bool, seed: int) -> tuple[ConvModel, dict]:
    """AdamW on the BCE (binary) or squared error (standardised real labels); the epoch of lowest validation
    loss is kept."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_model(config, encoder)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = F.binary_cross_entropy_with_logits if binary else F.mse_loss
    best = {"loss": math.inf, "epoch": 0, "state": None}
    stale = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), config.batch_size):
            batch = order[i:i + config.batch_size]
            loss = loss_fn(model(x[batch]), y[batch].float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            valid = float(loss_fn(model(x_valid), y_valid.float()))
        if valid < best["loss"]:
            best = {"loss": valid, "epoch": epoch, "state": {k: v.clone() for k, v in model.state_dict().items()}}
            stale = 0
        else:
            stale += 1
            if config.patience and stale >= config.patience:
                break
    model.load_state_dict(best["state"])
    return model.eval(), {"best_epoch": best["epoch"], "valid_loss": best["loss"], "epochs_run": epoch}


# ------------------------------------------------------------------ metrics
def calibration(probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Brier score, expected calibration error (equal-width bins, weighted by their counts) and the
    reliability table (per bin: count, mean predicted probability, observed fraction of label 1)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            predicted, observed = float(probabilities[inside].mean()), float(labels[inside].mean())
            ece += inside.mean() * abs(predicted - observed)
            table.append({"bin": f"[{edges[b]:.1f}, {edges[b + 1]:.1f}{']' if b == bins - 1 else ')'}",
                          "n": int(inside.sum()), "mean_predicted": predicted, "observed": observed})
    return {"brier": float(np.mean((probabilities - labels) ** 2)), "ece": float(ece), "reliability": table}


def held_out_metrics(kind: str, binary: bool, scores: np.ndarray, labels: np.ndarray) -> dict:
    """Metrics of (ensemble-mean) scores on held-out labels: AUROC for binary labels, accuracy and calibration
    for a classifier, Spearman / Pearson / RMSE for a regressor."""
    out: dict = {}
    if binary:
        out["auroc"] = auroc(scores, labels == 1)
    if kind == "classifier":
        p = 1.0 / (1.0 + np.exp(-scores))
        out["accuracy"] = float(((p > 0.5) == (labels == 1)).mean())
        out.update(calibration(p, labels))
    else:
        out["spearman"] = float(stats.spearmanr(scores, labels)[0]) if np.ptp(scores) > 0 else float("nan")
        out["pearson"] = float(stats.pearsonr(scores, labels)[0]) if np.ptp(scores) > 0 else float("nan")
        out["rmse"] = float(np.sqrt(np.mean((scores - labels) ** 2)))
    return out


# ------------------------------------------------------------------ the oracle
class AssayOracle:
    """A trained assay oracle: `predict` gives every member's score of every sequence (NaN: unreadable)."""

    def __init__(self, spec: dict, members: list[nn.Module]):
        self.spec = spec
        self.members = [m.eval() for m in members]
        self.alphabet = Alphabet(**spec["alphabet"])
        self.length = spec["length"]
        self.kind = spec["kind"]
        self.encoder = Encoder(self.alphabet, self.length, spec["features"], spec["k"])

    @property
    def name(self) -> str:
        return self.spec["label"]["column"]

    @property
    def report(self) -> dict:
        return self.spec["report"]

    @torch.no_grad()
    def predict(self, seqs: list[str], batch_size: int = 1024) -> np.ndarray:
        """(members, N) scores: log-odds of label 1 (classifier) or the label (regressor); NaN columns for
        sequences the oracle cannot read."""
        rows = [self.encoder.tokens(s) for s in seqs]
        readable = [i for i, r in enumerate(rows) if r is not None]
        out = np.full((len(self.members), len(seqs)), np.nan)
        label = self.spec["label"]
        for start in range(0, len(readable), batch_size):
            index = readable[start:start + batch_size]
            x = self.encoder.encode([rows[i] for i in index])
            for m, member in enumerate(self.members):
                out[m, index] = member(x).double().numpy() * label["scale"] + label["offset"]
        return out

    # -------------------------------------------------------------- files
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        tensors = {f"member{i}.{k}": v.detach().contiguous() for i, m in enumerate(self.members)
                   for k, v in m.state_dict().items()}
        with atomic_open(folder / WEIGHTS_FILE, "wb") as f:
            f.write(save_safetensors(tensors, metadata={"format": FORMAT}))
        with atomic_open(folder / SPEC_FILE) as f:
            json.dump(self.spec, f, indent=2)
        return folder

    @classmethod
    def load(cls, path: str | Path) -> AssayOracle:
        """An oracle folder (or its oracle.json)."""
        path = Path(path)
        folder = path.parent if path.name == SPEC_FILE else path
        if not (folder / SPEC_FILE).is_file():
            raise AssayOracleError(f"{path}: not an assay oracle (no {SPEC_FILE}); train one with "
                                   f"`vidd train-oracle --data FILE ...`")
        try:
            spec = json.loads((folder / SPEC_FILE).read_text())
        except json.JSONDecodeError as e:
            raise AssayOracleError(f"{folder / SPEC_FILE}: not JSON ({e.msg})") from e
        if not isinstance(spec, dict) or spec.get("format") != FORMAT:
            found = spec.get("format") if isinstance(spec, dict) else type(spec).__name__
            raise AssayOracleError(f"{folder / SPEC_FILE}: format {found!r}, expected {FORMAT!r}")
        if not (folder / WEIGHTS_FILE).is_file():
            raise AssayOracleError(f"{folder}: no {WEIGHTS_FILE}")
        tensors = load_safetensors((folder / WEIGHTS_FILE).read_bytes())
        config = cfg.from_dict(AssayOracleConfig, spec["config"], where=f"{folder / SPEC_FILE}: config")
        alphabet = Alphabet(**spec["alphabet"])
        encoder = Encoder(alphabet, spec["length"], spec["features"], spec["k"])
        members = []
        for i in range(spec["members"]):
            member = build_model(config, encoder)
            prefix = f"member{i}."
            try:
                member.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
            except RuntimeError as e:
                raise AssayOracleError(f"{folder}: weights of member {i} do not match {SPEC_FILE}: {e}") from e
            members.append(member)
        return cls(spec, members)


def train_assay_oracle(config: AssayOracleConfig, data: LabelledSequences, alphabet: str,
                       log: Callable[[str], None] = print) -> AssayOracle:
    """Train an oracle on labelled sequences (module docstring): split, fit every member, score the held-out
    split. The returned oracle's `report` holds the split sizes and the held-out metrics."""
    start_time = time.monotonic()
    if config.threads:
        torch.set_num_threads(config.threads)
    seqs = list(data.sequences)
    if alphabet.lower() in {name.lower() for name in LETTER_ALPHABETS}:
        seqs = [s.upper() for s in seqs]
    alpha = data_alphabet(alphabet, seqs)
    rows = []
    for s, line in zip(seqs, data.lines):
        tokens = [t for t in alpha.validate(s, where=f"{data.source['file']}: line {line}") if t != alpha.pad]
        if not tokens:
            raise SequenceError(f"{data.source['file']}: line {line}: an empty sequence")
        rows.append(tokens)
    length = max(map(len, rows))
    labels = data.labels
    binary = _binary(config.labels, labels)
    if config.model == "logistic" and not binary:
        raise AssayOracleError("--model logistic needs binary (0/1) labels; use ridge or cnn for real-valued labels")
    kind = "classifier" if config.model == "logistic" or (config.model == "cnn" and binary) else "regressor"
    encoder = Encoder(alpha, length, "onehot" if config.model == "cnn" else config.features, config.k)
    train, test = _split(labels if binary else None, len(seqs), config.test_fraction, config.seed)
    x = encoder.encode([encoder.tokens(s) for s in seqs])
    fit_part, valid = train, np.array([], dtype=np.int64)
    if config.model == "cnn":
        fit_part, valid = _split(labels[train] if binary else None, len(train), config.valid_fraction, config.seed + 1)
        fit_part, valid = train[fit_part], train[valid]
    offset, scale = 0.0, 1.0
    if kind == "regressor" and config.model == "cnn":  # the network learns standardised labels
        offset, scale = float(labels[fit_part].mean()), float(labels[fit_part].std() or 1.0)
    target = torch.from_numpy((labels - offset) / scale)
    log(f"assay oracle: {len(seqs)} sequences ({alpha.name}, length {min(map(len, rows))}-{length}), "
        f"{'binary' if binary else 'real'} labels; {config.model} {kind}; split: {len(fit_part)} train, "
        f"{len(valid)} validation, {len(test)} held out; {config.ensemble} member(s)")
    members, histories = [], []
    for m in range(config.ensemble):
        rng = np.random.default_rng([config.seed, m])
        part = fit_part if config.ensemble == 1 else rng.choice(fit_part, size=len(fit_part), replace=True)
        if config.model == "ridge":
            member, history = fit_ridge(x[part], target[part], config.l2), {}
        elif config.model == "logistic":
            member, history = fit_logistic(x[part], target[part], config.l2), {}
        else:
            member, history = fit_cnn(config, encoder, x[part], target[part], x[valid], target[valid], binary,
                                      seed=config.seed * 1000 + m)
        members.append(member.eval())
        histories.append(history)
    spec = {
        "format": FORMAT, "kind": kind, "model": config.model, "features": encoder.features, "k": config.k,
        "alphabet": alpha.to_dict(), "length": length, "fixed_length": min(map(len, rows)) == length,
        "label": {"column": data.source["label_column"], "type": "binary" if binary else "real",
                  "offset": offset, "scale": scale},
        "score": "log-odds of label 1" if kind == "classifier" else "predicted label",
        "members": config.ensemble, "config": cfg.to_dict(config), "source": data.source, "report": {},
    }
    oracle = AssayOracle(spec, members)
    scores = oracle.predict([seqs[i] for i in test])
    held_out = held_out_metrics(kind, binary, scores.mean(0), labels[test])
    main = "auroc" if binary else "spearman"
    spec["report"] = {
        "n_train": int(len(fit_part)), "n_valid": int(len(valid)), "n_test": int(len(test)),
        "label_balance_train": float(labels[fit_part].mean()) if binary else None,
        "held_out": held_out,
        "held_out_per_member": [held_out_metrics(kind, binary, s, labels[test])[main] for s in scores],
        "members": histories, "train_seconds": round(time.monotonic() - start_time, 2),
    }
    log(f"held out ({len(test)}): {main} {held_out[main]:.4f}"
        + (f", ECE {held_out['ece']:.4f}, Brier {held_out['brier']:.4f}" if kind == "classifier" else ""))
    return oracle


def _binary(choice: str, labels: np.ndarray) -> bool:
    zero_one = bool(np.isin(labels, (0.0, 1.0)).all())
    if choice == "binary" and not zero_one:
        bad = labels[~np.isin(labels, (0.0, 1.0))][0]
        raise AssayOracleError(f"labels: binary labels must be 0 or 1, found {bad:g}")
    return zero_one if choice == "auto" else choice == "binary"


def _split(labels: np.ndarray | None, n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, split off) index arrays: `fraction` of range(n) split off at random, per class when `labels`
    are given (binary), at least one row of each class on each side."""
    rng = np.random.default_rng(seed)
    groups = ({f"label {c}": np.flatnonzero(labels == c) for c in (0, 1)} if labels is not None
              else {"sequences": np.arange(n)})
    kept, off = [], []
    for what, group in groups.items():
        if len(group) < 2:
            raise AssayOracleError(f"too few sequences to split: {len(group)} with {what} (need at least 2)")
        cut = min(len(group) - 1, max(1, round(fraction * len(group))))
        order = rng.permutation(group)
        off.append(order[:cut])
        kept.append(order[cut:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(off))


# ------------------------------------------------------------------ the reward
class AssayOracleReward(Reward):
    """An assay oracle's ensemble mean - `pessimism` * its standard deviation over the members."""

    cost_hint = 1e-4

    def __init__(self, oracle: AssayOracle | str | Path, pessimism: float = 0.0):
        if not isinstance(oracle, AssayOracle):
            oracle = AssayOracle.load(oracle)
        if pessimism < 0:
            raise ConfigError(f"task.pessimism: must be >= 0, got {pessimism}")
        if pessimism > 0 and len(oracle.members) < 2:
            raise ConfigError(f"task.pessimism: {pessimism} needs an oracle ensemble, but oracle "
                              f"{oracle.name!r} has one member (train it with --ensemble N)")
        self.oracle, self.pessimism = oracle, float(pessimism)
        self.name = f"oracle:{oracle.name}" + (f"-{pessimism:g}std" if pessimism else "")

    def score(self, seqs):
        scores = self.oracle.predict(list(seqs))
        return scores.mean(0) - self.pessimism * scores.std(0)


def score_table(oracle: AssayOracle, seqs: list[str], pessimism: float = 0.0) -> list[dict]:
    """The distinct sequences with their count and the oracle's score (mean - pessimism * std over the
    ensemble), best first (unreadable ones last): what `vidd oracle-predict` writes to pick designs from."""
    counts = Counter(seqs)
    distinct = list(counts)
    scores = oracle.predict(distinct)
    mean, std = scores.mean(0), scores.std(0)
    rows = [{"sequence": s, "count": counts[s], "score": float(m - pessimism * d), "mean": float(m), "std": float(d)}
            for s, m, d in zip(distinct, mean, std)]
    rows.sort(key=lambda r: (math.isnan(r["score"]), -r["score"] if not math.isnan(r["score"]) else 0.0))
    return [{"rank": i, **r} for i, r in enumerate(rows, start=1)]
