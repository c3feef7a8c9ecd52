"""Pretraining a masked diffusion model by the continuous-time MDLM ELBO, with resume.

The levers of a pretrained model are settings (docs/config.md): the network's size (`model.*`), time
conditioning (`model.time_conditioned`), the noise schedule (`model.schedule`), how long it trains (`epochs`),
how much data it sees (`train_sequences`) and, for molecules, SMILES randomisation (`augment`). The number of
sampling steps is the sampler's (`vidd sample --steps`, `vidd model-report --steps`). `init_from` continues
pretraining a model folder (more data or steps on top of an existing model)."""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tqdm.auto import tqdm

from vidd.chem.molecules import PAD as SELFIES_PAD, random_selfies_corpus
from vidd.core.alphabets import Alphabet
from vidd.core.config import ConfigError, option, to_dict
from vidd.diffusion.backbones import DilatedCNN, Transformer
from vidd.core.numerics import chunked
from vidd.core.safefiles import load_state, save_state
from vidd.diffusion.masked import MaskedDiffusion
from vidd.diffusion.schedule import NoiseSchedule


@dataclass
class ModelConfig:
    backbone: Literal["cnn", "transformer"] = option("cnn", "denoiser network")
    hidden: int = option(128, "hidden width")
    stacks: int = option(4, "cnn: number of stacks of dilated convolutions")
    dilations: list[int] = option([1, 1, 4, 16, 64], "cnn: dilations of the layers of one stack")
    kernel: int = option(9, "cnn: convolution kernel size")
    layers: int = option(4, "transformer: number of layers")
    heads: int = option(4, "transformer: attention heads")
    dropout: float = option(0.0, "dropout rate")
    time_conditioned: bool = option(False, "feed the time to the network (disables the cached sampler)")
    schedule: Literal["loglinear", "cosine"] = option(
        "loglinear", "noise schedule: loglinear (MDLM's, masked share t) or cosine (1 - cos(pi t / 2): fewer tokens "
                     "revealed early in sampling)")

    def build(self, alphabet: Alphabet, length: int) -> MaskedDiffusion:
        if self.backbone == "cnn":
            net = DilatedCNN(DilatedCNN.Config(
                alphabet.size, self.hidden, self.stacks, list(self.dilations), self.kernel,
                self.dropout, self.time_conditioned))
        else:
            net = Transformer(Transformer.Config(
                alphabet.size, length, self.hidden, self.layers, self.heads, self.dropout,
                self.time_conditioned))
        return MaskedDiffusion(net, alphabet, length, NoiseSchedule.registry[self.schedule]())


@dataclass
class PretrainConfig:
    model: ModelConfig = option(ModelConfig(), "network and noise schedule")
    init_from: str = option(
        "", "a model folder whose weights start the network and its EMA (continued pretraining); its network, "
            "schedule, alphabet and length must be those model.* and the data give ('': random initialisation)")
    train_sequences: int = option(
        0, "train on a seeded subset of this many training sequences (0: the data's default: all of --data, the "
           "task's own choice with --task, e.g. 200,000 MOSES molecules for moses-qed; -1: all of them)")
    augment: Literal["none", "random-smiles"] = option(
        "none", "random-smiles (molecules): every epoch, each molecule as the SELFIES of a new random "
                "non-canonical SMILES of it (one whose SELFIES does not fit the model's tokens or positions stays "
                "as it is); none: the sequences as given")
    augment_workers: int = option(1, "processes that randomise the molecules at the start of each epoch")
    epochs: float = option(10.0, "passes over the training sequences (fractions allowed)")
    batch_size: int = option(64, "sequences per optimiser step")
    lr: float = option(1e-3, "peak learning rate (AdamW)")
    weight_decay: float = option(0.0, "AdamW weight decay")
    warmup_steps: int = option(200, "linear learning-rate warm-up steps")
    cosine_decay: bool = option(True, "cosine-decay the learning rate to 10% by the last step")
    grad_clip: float = option(1.0, "gradient-norm clip")
    ema: float = option(0.999, "exponential moving average of weights (0 disables); the EMA model is saved")
    eval_every: int = option(500, "steps between validation ELBO evaluations and checkpoints")
    eval_sequences: int = option(512, "validation sequences used for the periodic ELBO")
    seed: int = option(0, "random seed")
    threads: int = option(0, "torch CPU threads (0: torch default)")
    device: str = option("cpu", "torch device")

    def validate(self):
        if self.train_sequences < -1:
            raise ConfigError(f"train_sequences: must be a count >= 1, 0 (the data's default) or -1 (all), got "
                              f"{self.train_sequences}")
        if self.augment_workers < 1:
            raise ConfigError(f"augment_workers: must be >= 1, got {self.augment_workers}")
        if self.init_from and not (Path(self.init_from) / "config.json").is_file():
            raise ConfigError(f"init_from: {self.init_from} is not a model folder (no config.json there)")


def _bits_per_token(model: MaskedDiffusion, seqs: torch.Tensor, generator) -> float:
    model.eval()
    with torch.no_grad():
        nelbo = chunked(lambda s: model.loss(s.to(model.device), generator), seqs, size=256)
    return float(nelbo.mean() / seqs.shape[1] / math.log(2))


def _starting_weights(folder: str, model: MaskedDiffusion) -> dict:
    """The weights of the model folder `folder`, checked to fit `model` (the network the settings build)."""
    start = MaskedDiffusion.load(folder)
    ours, theirs = model.spec(), start.spec()
    differing = [key for key in ("chain", "alphabet", "length", "backbone", "schedule") if ours[key] != theirs[key]]
    if differing:
        detail = "; ".join(f"{key}: the settings give {ours[key]}, {folder} has {theirs[key]}" for key in differing)
        raise ConfigError(f"init_from: {folder} is not the model these settings and data build ({detail}); set "
                          f"model.* to its network, e.g. from its config.json")
    return start.state_dict()


def pretrain(config: PretrainConfig, alphabet: Alphabet, train: list[str], valid: list[str],
             out: str | Path, resume: bool = False, log=print, length: int | None = None,
             trust_checkpoint: bool = False) -> MaskedDiffusion:
    """Train a masked diffusion model; writes out/model (a model folder of the EMA weights), out/state.pt,
    out/log.jsonl.

    `length` is the model's number of positions: by default the training sequences' length, or
    their longest for an alphabet with a padding token. `trust_checkpoint`: resume from a state.pt of
    vidd 0.1 (read by a restricted unpickler: tensors, containers and numpy values only)."""
    if config.augment != "none" and alphabet.pad != SELFIES_PAD:
        raise ConfigError(f"augment: {config.augment} randomises molecules and needs a SELFIES corpus (--task "
                          f"moses-qed, or --data FILE.smi); this corpus's alphabet is {alphabet.name}")
    out = Path(out)
    if config.threads:
        torch.set_num_threads(config.threads)
    x_train = alphabet.encode(train, length)
    length = x_train.shape[1]
    x_valid = alphabet.encode(valid, length)
    torch.manual_seed(config.seed)
    model = config.model.build(alphabet, length)
    if config.init_from and not resume:
        model.load_state_dict(_starting_weights(config.init_from, model))
    out.mkdir(parents=True, exist_ok=True)
    model = model.to(config.device)
    ema = copy.deepcopy(model) if config.ema > 0 else model
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(x_train) // config.batch_size)
    total_steps = max(1, int(config.epochs * steps_per_epoch))

    def lr_at(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
        if not config.cosine_decay:
            return config.lr * warm
        progress = min(1.0, step / total_steps)
        return config.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    gen = torch.Generator().manual_seed(config.seed)
    step, order, best = 0, torch.randperm(len(x_train), generator=gen), None
    state_path = out / "state.pt"
    if resume:
        if not state_path.is_file():
            raise FileNotFoundError(f"--resume: no pretraining state at {state_path}")
        state = load_state(state_path, trust=trust_checkpoint)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step, order, best = state["step"], state["order"], state.get("best")
        log(f"resumed at step {step}/{total_steps}")
    elif state_path.exists():
        raise FileExistsError(f"{out} already holds a pretraining run; pass --resume to continue it")
    ema.metadata = {"config": to_dict(config), "train_sequences": len(train)}
    epoch, unchanged = None, None  # augment: the epoch x_train holds, the share of it trained on as given

    def augmented_epoch(n: int) -> torch.Tensor:
        """Epoch `n`'s training tokens: each molecule as a random SMILES' SELFIES, or as it is when that misfits."""
        nonlocal unchanged
        drawn = random_selfies_corpus(train, config.seed * 1_000_003 + n, config.augment_workers)
        kept = [d if alphabet.fits(d, length) else s for d, s in zip(drawn, train)]
        unchanged = sum(k == s for k, s in zip(kept, train)) / len(train)
        return alphabet.encode(kept, length)

    def evaluate_and_save():
        nonlocal best
        val_bits = _bits_per_token(ema, x_valid[: config.eval_sequences], torch.Generator().manual_seed(1))
        record = {"step": step, "epoch": step / steps_per_epoch, "val_bits_per_token": val_bits,
                  "lr": lr_at(step), "time": time.time()}
        if unchanged is not None:
            record["augment_unchanged"] = unchanged
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        ema.metadata.update(step=step, val_bits_per_token=val_bits)
        if best is None or val_bits < best:
            best = val_bits
            ema.save_pretrained(out / "model")
        save_state({
            "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
            "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), "step": step,
            "order": order, "best": best, "config": to_dict(config),
        }, state_path)
        return val_bits

    if config.init_from and not resume:  # the learning curve starts at the model trained on
        log(f"step 0 (from {config.init_from}): validation {evaluate_and_save():.4f} bits/token")
    bar = tqdm(total=total_steps, initial=step, desc="pretrain", mininterval=5.0)
    model.train()
    while step < total_steps:
        pos = (step % steps_per_epoch) * config.batch_size
        if pos == 0 and step > 0:
            order = torch.randperm(len(x_train), generator=gen)
        if config.augment != "none" and step // steps_per_epoch != epoch:
            epoch = step // steps_per_epoch
            x_train = augmented_epoch(epoch)
        batch = x_train[order[pos:pos + config.batch_size]].to(config.device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model.loss(batch, gen).mean() / length
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        if ema is not model:
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - config.ema)
        step += 1
        bar.update(1)
        bar.set_postfix(loss_bits=f"{loss.item() / math.log(2):.3f}")
        if step % config.eval_every == 0 or step == total_steps:
            val_bits = evaluate_and_save()
            bar.write(f"step {step}: validation {val_bits:.4f} bits/token (best {best:.4f})")
            model.train()
    bar.close()
    return MaskedDiffusion.from_pretrained(out / "model")
