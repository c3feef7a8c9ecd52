"""The three models of a fine-tuning run (student, roll-out, pretrained), built from the pretrained model as the
run config's `model` section says: how they hold their weights, what trains, what the lazy update copies and
what a checkpoint holds.

Full fine-tuning (`finetune: full`, the default): the student and the roll-out model are full copies of the
pretrained model; the student trains every weight, the lazy update copies all of them and checkpoints hold both.

LoRA (`finetune: lora`, masked-LM adapter models, through PEFT): one set of frozen base weights serves all three
models. The student and the roll-out model are structural copies of the pretrained model whose modules share its
weight tensors, each with its own LoRA adapters in the target layers; the pretrained model is the base itself.
Only the student's adapters train (and hold Adam's moments); the lazy update copies adapters, checkpoints hold
the adapters of both, and the run's final model is the base with the student's adapters merged in.

Precision: `precision` is the autocast dtype of every model's network (fp16 also scales the loss against
underflow); `frozen_precision` is the storage dtype of the frozen weights (full: the pretrained and roll-out
copies; LoRA: the shared base, which the student computes with too). A model whose weights are held in reduced
precision runs under autocast at that precision, so its layers accept fp32 inputs (e.g. time features).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from vidd.core.config import ConfigError, option
from vidd.core.extras import require
from vidd.diffusion.lm_backbone import MaskedLMBackbone
from vidd.diffusion.masked import CheckpointError, MaskedDiffusion

Precision = Literal["fp32", "bf16", "fp16"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: the name prefix of PEFT's LoRA parameters (lora_A, lora_B)
LORA_PREFIX = "lora_"
ADAPTER = "default"


@dataclass
class ModelConfig:
    finetune: Literal["full", "lora"] = option(
        "full", "what the student trains: every weight (full), or LoRA adapters on a frozen base shared by the "
                "student, roll-out and pretrained models (lora: masked-LM adapter models only, extra [lora])")
    lora_rank: int = option(8, "rank r of every LoRA adapter")
    lora_alpha: float = option(16.0, "LoRA scale numerator: an adapter adds (lora_alpha / lora_rank) B A x")
    lora_target_modules: list[str] = option(
        [], "LM layers that get adapters, by name or name suffix (e.g. [query, value]); empty: every linear layer "
            "but the output layer (PEFT's all-linear)")
    precision: Precision = option(
        "fp32", "compute precision of the models' networks (autocast); fp16 also scales the loss (GradScaler); "
                "weights and Adam state of what trains stay fp32")
    frozen_precision: Precision = option(
        "fp32", "storage precision of the frozen weights: the pretrained and roll-out copies (full), the shared "
                "base weights (lora); the roll-out model's and the KL's numbers are then approximate")
    compile: bool = option(False, "torch.compile every model's network (compiled on first use and for new shapes)")
    gradient_checkpointing: bool = option(
        False, "recompute the activations of each block of the student's network (the elements of its outermost "
               "layer lists) in the backward pass: less memory for about one more forward")

    def validate(self):
        if self.lora_rank < 1:
            raise ConfigError(f"lora_rank: must be >= 1, got {self.lora_rank}")
        if self.lora_alpha <= 0:
            raise ConfigError(f"lora_alpha: must be > 0, got {self.lora_alpha}")


class ModelCopies:
    """Student, roll-out and pretrained models for one run. `pretrained` (frozen, on the run's device) becomes the
    run's pretrained model; with a reduced `frozen_precision` it is cast in place. `seed` draws the LoRA
    adapters' initial weights (the same in every process of a data-parallel run)."""

    def __init__(self, pretrained: MaskedDiffusion, config: ModelConfig, seed: int = 0):
        self.config = config
        frozen = DTYPES[config.frozen_precision]
        check_model_settings(pretrained, config)
        if config.precision != "fp32" or config.frozen_precision != "fp32" or config.compile:
            pretrained = copy.deepcopy(pretrained)  # cast and compiled below: the caller's model stays as it was
        if config.finetune == "lora":
            pretrained.to(frozen)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.student = self._with_adapters(pretrained)
            self.rollout = self._with_adapters(pretrained).requires_grad_(False)
            copy_student_to_rollout(self.student, self.rollout)
        else:
            self.student = copy.deepcopy(pretrained).requires_grad_(True)
            self.rollout = copy.deepcopy(pretrained)
            if frozen != torch.float32:
                self.rollout.to(frozen)
                pretrained.to(frozen)
        self.pretrained = pretrained
        student_weights = config.frozen_precision if config.finetune == "lora" else "fp32"
        for model, stored in ((self.student, student_weights), (self.rollout, config.frozen_precision),
                              (pretrained, config.frozen_precision)):
            model.autocast_dtype = next((DTYPES[p] for p in (config.precision, stored) if p != "fp32"), None)
            if config.compile:
                model.backbone.compile()
        if config.gradient_checkpointing:
            for block in outermost_blocks(self.student.backbone):
                recompute_in_backward(block)
        self.trainable = [p for p in self.student.parameters() if p.requires_grad]
        # fp16 gradients underflow without loss scaling (torch >= 2.3 for the device-generic GradScaler); a LoRA
        # student on an fp16 base computes in fp16 whatever `precision` says
        fp16 = self.student.autocast_dtype is torch.float16
        self.scaler = torch.amp.GradScaler(self.student.device.type) if fp16 else None

    def _with_adapters(self, base: MaskedDiffusion) -> MaskedDiffusion:
        """A copy of `base` sharing its weight tensors, with LoRA adapters in the target layers of its LM."""
        model = sharing_weights(base)
        inject_adapters(model.backbone.lm, self.config)
        for p in adapter_parameters(model).values():  # PEFT makes them in the base's dtype; they train in fp32
            p.data = p.data.float()
        return model

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the optimiser updates: every student weight (full), or the student's adapters (lora)."""
        return self.trainable

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def clip_and_step(self, optimizer: torch.optim.Optimizer, max_norm: float) -> float:
        """Clip the (unscaled) gradient norm and take the optimiser step (which fp16 loss scaling skips when a
        gradient overflowed); returns the norm before clipping."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        norm = float(torch.nn.utils.clip_grad_norm_(self.trainable, max_norm))
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()
        return norm

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, metadata: dict) -> dict:
        """What a trainer checkpoint holds of the models: the student's spec with `metadata` (its provenance) and
        both full copies (full), or both adapter sets (lora: the base is the task's model, rebuilt on resume)."""
        model = {**self.student.spec(), "metadata": metadata}
        if self.config.finetune == "lora":
            state = {"model": model,
                     "adapters": {"student": adapter_state(self.student), "rollout": adapter_state(self.rollout)}}
        else:
            state = {"model": {**model, "state_dict": self.student.state_dict()}, "rollout": self.rollout.state_dict()}
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        lora = self.config.finetune == "lora"
        if lora != ("adapters" in state):
            held = "LoRA adapters" if "adapters" in state else "full fine-tuning weights"
            raise CheckpointError(f"the checkpoint holds {held} but the run's config says model.finetune="
                                  f"{self.config.finetune}; resume with the settings the run started with")
        if lora:
            load_adapters(self.student, state["adapters"]["student"])
            load_adapters(self.rollout, state["adapters"]["rollout"])
        else:
            self.student.load_state_dict(state["model"]["state_dict"])
            self.rollout.load_state_dict(state["rollout"])
        if self.scaler is not None and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])

    def final_model(self) -> MaskedDiffusion:
        """The fine-tuned model as a plain vidd model: the student (full), or a new fp32 model holding the base
        weights with the student's adapters merged in (lora), which loads and samples without PEFT."""
        if self.config.finetune != "lora":
            return self.student
        peft = require("peft", "lora", "LoRA fine-tuning (model.finetune=lora)")
        model = copy.deepcopy(self.pretrained).float()  # a copy: the shared base stays as it is
        model.autocast_dtype = None
        model.backbone._compiled_call_impl = None  # the copied one would call the pretrained model's network
        merged = model.backbone.lm
        with torch.no_grad():
            for name, layer in self.student.backbone.lm.named_modules():
                if isinstance(layer, peft.tuners.tuners_utils.BaseTunerLayer):
                    merged.get_submodule(name).weight += layer.get_delta_weight(ADAPTER).float()
        return model.eval()


def check_model_settings(model: MaskedDiffusion, config: ModelConfig) -> None:
    """The `model` section's settings against the model they will apply to (checked before a run starts)."""
    if config.finetune == "lora":
        if not isinstance(model.backbone, MaskedLMBackbone):
            raise ConfigError(
                f"model.finetune: lora needs a masked-LM adapter model (BERT, ESM-2, AntiBERTy, EvoDiff: "
                f"vidd.diffusion.lm_backbone.MaskedLMBackbone), this model's network is a "
                f"{type(model.backbone).__name__}; use model.finetune=full")
        require("peft", "lora", "LoRA fine-tuning (model.finetune=lora)")
        check_lora_targets(model.backbone.lm, config)
    if config.gradient_checkpointing and not any(True for _ in outermost_blocks(model.backbone)):
        raise ConfigError(f"model.gradient_checkpointing: the {type(model.backbone).__name__} network "
                          f"has no layer list whose blocks could be recomputed")


def sharing_weights(module: nn.Module) -> nn.Module:
    """A copy of `module` that shares its weight tensors (its own structure, the same memory)."""
    return copy.deepcopy(module, {id(t): t for t in (*module.parameters(), *module.buffers())})


def inject_adapters(lm: nn.Module, config: ModelConfig) -> None:
    """LoRA adapters in the layers of `lm` that `lora_target_modules` names, by PEFT's own rules (all-linear when
    empty); a target PEFT cannot use is a ConfigError naming the LM's layer types."""
    peft = require("peft", "lora", "LoRA fine-tuning (model.finetune=lora)")
    targets = config.lora_target_modules
    lora = peft.LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, target_modules=targets or "all-linear")
    try:
        peft.inject_adapter_in_model(lora, lm, ADAPTER)
    except ValueError as e:
        layers = sorted({type(m).__name__ for m in lm.modules()} - {type(lm).__name__})
        raise ConfigError(f"model.lora_target_modules: {targets or 'all-linear (every linear layer)'} does not fit "
                          f"the {type(lm).__name__} LM: {e} (its layer types: {', '.join(layers)}); name its layers "
                          f"by name or name suffix, e.g. [query, value]") from None


def check_lora_targets(lm: nn.Module, config: ModelConfig) -> None:
    """That PEFT can put adapters where `lora_target_modules` says, tried on a weight-sharing copy of the LM
    (the adapters it builds are small), before a run starts."""
    inject_adapters(sharing_weights(lm), config)


# ---------------------------------------------------------------------- adapters
def adapter_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The LoRA adapters of `model` by parameter name (empty for a model without adapters)."""
    return {n: p for n, p in model.named_parameters() if LORA_PREFIX in n}


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in adapter_parameters(model).items()}


def load_adapters(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = adapter_parameters(model)
    if params.keys() != state.keys():
        raise CheckpointError(f"the checkpoint's {len(state)} adapter tensors do not match the model's "
                              f"{len(params)} (were model.lora_* settings changed?)")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def copy_student_to_rollout(student: MaskedDiffusion, rollout: MaskedDiffusion) -> None:
    """The lazy update: the roll-out model takes the student's trained weights: its LoRA adapters if it has
    any, else its whole state (cast to the roll-out model's precision)."""
    adapters = adapter_state(student)
    if adapters:
        load_adapters(rollout, adapters)
    else:
        rollout.load_state_dict(student.state_dict())


# ---------------------------------------------------------------------- gradient checkpointing
def outermost_blocks(module: nn.Module):
    """The elements of the outermost `nn.ModuleList`s under `module`: a network's repeated blocks (BERT/ESM-2
    layers, ByteNet blocks, vidd's own CNN and transformer blocks)."""
    for child in module.children():
        if isinstance(child, nn.ModuleList):
            yield from child
        else:
            yield from outermost_blocks(child)


class _Recomputed:
    """Mixed into a block's class: with gradients on, its activations are recomputed in the backward pass."""

    def forward(self, *args, **kwargs):
        if torch.is_grad_enabled():
            return checkpoint(super().forward, *args, use_reentrant=False, **kwargs)
        return super().forward(*args, **kwargs)


_RECOMPUTED: dict[type, type] = {}


def recompute_in_backward(block: nn.Module) -> None:
    """Gradient checkpointing of one block, in place. The block's class is swapped for a subclass, so its
    parameter names, its state dict and its copies are unchanged."""
    cls = type(block)
    if isinstance(block, _Recomputed):
        return
    if cls not in _RECOMPUTED:
        _RECOMPUTED[cls] = type(f"Recomputed{cls.__name__}", (_Recomputed, cls), {})
    block.__class__ = _RECOMPUTED[cls]
