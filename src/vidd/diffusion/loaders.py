"""Masked LMs from local files as order-agnostic in-filling models (`MaskedLMBackbone` + `OrderAgnosticDiffusion`).

One loader per family: Hugging Face BERT / ESM-2 folders (`from_hf_masked_lm`, `load_esm2`), EvoDiff OA-DM
checkpoints (`load_evodiff_oadm`) and AntiBERTy (`antiberty_prior`, its weights fetched from the
antiberty==0.1.3 wheel). Nothing is downloaded from a model hub; checkpoints of the resulting models hold the
LM's config and weights, so they load without the original files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from vidd.core.alphabets import PROTEIN, Alphabet
from vidd.core.extras import require
from vidd.data.fetch import WheelFile, fetch_wheel_files
from vidd.diffusion.lm_backbone import MaskedLMBackbone, vocabulary_ids
from vidd.diffusion.order_agnostic import OrderAgnosticDiffusion


def adapter_model(backbone: MaskedLMBackbone, alphabet: Alphabet, length: int | None = None,
                  template: torch.Tensor | None = None) -> OrderAgnosticDiffusion:
    """An eval-mode OA model around `backbone`: a template (in-filling) or `length` all-designable positions."""
    if template is None and length is None:
        raise ValueError("give a template or a length")
    length = len(template) if template is not None else length
    return OrderAgnosticDiffusion(backbone, alphabet, length, template=template).eval()


# ------------------------------------------------------------------ Hugging Face: BERT, ESM-2
def from_hf_masked_lm(path: str | Path, alphabet: Alphabet = PROTEIN, length: int | None = None,
                      template: torch.Tensor | None = None) -> OrderAgnosticDiffusion:
    """A local Hugging Face masked-LM folder (config.json + weights + tokenizer files) of a BERT or ESM
    architecture, e.g. an ESM-2 checkpoint saved with `save_pretrained`, as an OA in-filling model."""
    transformers = require("transformers", "protein", "loading a Hugging Face masked LM")
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json (expected a local Hugging Face model folder)")
    config = transformers.AutoConfig.from_pretrained(path)
    architecture = {"bert": "bert", "esm": "esm"}.get(config.model_type)
    if architecture is None:
        raise ValueError(f"{path}: model_type {config.model_type!r} is not supported (bert, esm)")
    lm = transformers.AutoModelForMaskedLM.from_pretrained(path).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    vocab = tokenizer.get_vocab()
    backbone = MaskedLMBackbone(MaskedLMBackbone.Config(
        architecture, lm.config.to_dict(), vocabulary_ids(vocab, alphabet, tokenizer.mask_token),
        prefix=[tokenizer.cls_token_id], suffix=[tokenizer.eos_token_id if architecture == "esm"
                                                 else tokenizer.sep_token_id],
        source=str(path)), lm)
    return adapter_model(backbone, alphabet, length, template)


def load_esm2(path: str | Path, length: int | None = None, template: torch.Tensor | None = None,
              alphabet: Alphabet = PROTEIN) -> OrderAgnosticDiffusion:
    """ESM-2 (`transformers` `EsmForMaskedLM`, e.g. facebook/esm2_t6_8M_UR50D downloaded elsewhere and copied
    here) as an OA in-filling model: <cls> sequence <eos>, logits of the 20 amino acids."""
    model = from_hf_masked_lm(path, alphabet, length, template)
    if model.backbone.config.architecture != "esm":
        raise ValueError(f"{path}: not an ESM model (model_type {model.backbone.config.lm_config.get('model_type')!r})")
    return model


# ------------------------------------------------------------------ EvoDiff OA-DM
#: EvoDiff's token alphabet (sequence_models.constants.MSA_ALPHABET), the order of the OA-DM logits
EVODIFF_ALPHABET = "ACDEFGHIKLMNPQRSTVWYBZXJOU-*#@!"
EVODIFF_MASK = "#"


def evodiff_oadm_arguments(config: dict) -> dict:
    """ByteNetLMTime arguments of an EvoDiff OA-DM model from its training config (e.g. the package's
    config/config38M.json), as `evodiff.pretrained.load_sequence_checkpoint` builds them (timesteps=None)."""
    return {
        "n_tokens": len(EVODIFF_ALPHABET), "d_embedding": config["d_embed"], "d_model": config["d_model"],
        "n_layers": config["n_layers"], "kernel_size": config["kernel_size"], "r": config["r"],
        "rank": config.get("rank"), "padding_idx": EVODIFF_ALPHABET.index(EVODIFF_MASK), "causal": False,
        "dropout": 0.0, "final_ln": True, "slim": config.get("slim", True),
        "activation": config.get("activation", "relu"), "tie_weights": False, "timesteps": None,
    }


def evodiff_config_path(name: str = "config38M.json") -> Path:
    """A model config the evodiff wheel installs next to the package (site-packages/config/)."""
    evodiff = require("evodiff", "evodiff", "an EvoDiff OA-DM model")
    path = Path(evodiff.__file__).resolve().parents[1] / "config" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (the evodiff wheel installs it); pass config= explicitly")
    return path


def load_evodiff_oadm(checkpoint: str | Path, config: str | Path | dict | None = None, length: int | None = None,
                      template: torch.Tensor | None = None, alphabet: Alphabet = PROTEIN) -> OrderAgnosticDiffusion:
    """EvoDiff OA-DM (the paper's protein prior) from a local checkpoint file in EvoDiff's format (a torch file
    holding {"model_state_dict": ...} with DistributedDataParallel's "module." prefixes, as evodiff downloads
    for "oaar-38M") and its config (a JSON path or dict; default: the evodiff package's config/config38M.json)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"EvoDiff checkpoint not found: {checkpoint}")
    if config is None:
        config = evodiff_config_path()
    if not isinstance(config, dict):
        config = json.loads(Path(config).read_text())
    try:  # a safe load: unpickling an arbitrary file could run code in it
        payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever torch raises for a file it cannot read safely
        raise ValueError(f"{checkpoint}: not readable as an EvoDiff checkpoint without running code in it "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e
    if not isinstance(payload, dict) or "model_state_dict" not in payload:
        raise ValueError(f"{checkpoint}: not an EvoDiff checkpoint (no 'model_state_dict')")
    state = {k.split("module.", 1)[1] if k.startswith("module.") else k: v
             for k, v in payload["model_state_dict"].items()}
    arguments = evodiff_oadm_arguments(config)
    backbone = MaskedLMBackbone(MaskedLMBackbone.Config(
        "evodiff-bytenet", arguments, vocabulary_ids({c: i for i, c in enumerate(EVODIFF_ALPHABET)}, alphabet,
                                                     EVODIFF_MASK), source=str(checkpoint)))
    backbone.lm.load_state_dict(state)
    return adapter_model(backbone, alphabet, length, template)


# ------------------------------------------------------------------ AntiBERTy
# AntiBERTy: 26M-parameter antibody BERT; its weights ship inside the antiberty==0.1.3 wheel (MIT) and are
# loaded with the model class of the current antiberty package (1.0.0), see docs/tasks/antibody.md
ANTIBERTY_VOCAB = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"ACDEFGHIKLMNPQRSTVWY")


def antiberty_files():
    """The AntiBERTy weight files of the antiberty==0.1.3 wheel, as `vidd.data.fetch.WheelFile`s."""
    member = "antiberty/trained_models/AntiBERTy_md_smooth/"
    return (
        WheelFile("antiberty==0.1.3", member + "config.json",
                  "e199c1692b5f0246ebc5522102044d6e900ffc7d56fa5932fdd5b3d56ef487e9", "antiberty-0.1.3/config.json"),
        WheelFile("antiberty==0.1.3", member + "pytorch_model.bin",
                  "f1ae33eac8cc8784a7d4be5a600141d2fa7bc7d8d5b3f5324d64a6a63bd0f137", "antiberty-0.1.3/pytorch_model.bin"),
    )


def antiberty_weights_dir() -> Path:
    """A folder with AntiBERTy's config.json and pytorch_model.bin: $ANTIBERTY_WEIGHTS_DIR if set (the
    variable the antiberty package reads), else the files fetched from the antiberty==0.1.3 wheel into the
    vidd cache (sha256-checked; a clear error offline)."""
    env = os.environ.get("ANTIBERTY_WEIGHTS_DIR")
    if env:
        folder = Path(env)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"ANTIBERTY_WEIGHTS_DIR={env} holds no config.json")
        return folder
    return fetch_wheel_files(list(antiberty_files()))[0].parent


def load_antiberty_lm(weights_dir: str | Path | None = None) -> nn.Module:
    """The raw AntiBERTy model (antiberty package class, eval mode) from `weights_dir` or `antiberty_weights_dir()`."""
    module = require("antiberty.model.AntiBERTy", "protein", "the AntiBERTy prior")
    transformers = require("transformers", "protein", "the AntiBERTy prior")
    folder = Path(weights_dir) if weights_dir else antiberty_weights_dir()
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # no "Loading weights" bars
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        return module.AntiBERTy.from_pretrained(str(folder)).eval()
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()


def antiberty_backbone(lm: nn.Module, source: str = "") -> MaskedLMBackbone:
    vocab = {t: i for i, t in enumerate(ANTIBERTY_VOCAB)}
    return MaskedLMBackbone(MaskedLMBackbone.Config(
        "antiberty", lm.config.to_dict(), vocabulary_ids(vocab, PROTEIN, "[MASK]"),
        prefix=[vocab["[CLS]"]], suffix=[vocab["[SEP]"]], source=source), lm)


def antiberty_prior(template: torch.Tensor | None = None, length: int | None = None,
                    weights_dir: str | Path | None = None) -> OrderAgnosticDiffusion:
    """AntiBERTy as an OA in-filling model over the 20 amino acids ([CLS] chain [SEP], no padding)."""
    folder = Path(weights_dir) if weights_dir else antiberty_weights_dir()
    return adapter_model(antiberty_backbone(load_antiberty_lm(folder), f"AntiBERTy ({folder})"),
                         PROTEIN, length, template)
