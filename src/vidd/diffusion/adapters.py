"""External masked language models as order-agnostic masked diffusion models, with in-filling.

Two pieces:

- `MaskedLMBackbone`: a `Backbone` around a masked LM of a known architecture (`ARCHITECTURES`: BERT and
  ESM-2 through `transformers`, AntiBERTy through the `antiberty` package, EvoDiff's ByteNet through
  `evodiff`). It maps vidd's letters and mask to the LM's token ids, adds the LM's special tokens
  (e.g. [CLS] ... [SEP]) and returns the LM's logits restricted to vidd's letters, in vidd's order.
  The LM ignores time: its marginals p(x_0^l | x_t) are a function of the visible tokens only.
- `OrderAgnosticDiffusion`: the chain of EvoDiff OA-DM and of BERT-style in-filling. It starts from a
  *template*: fixed positions hold their letters and are never masked or changed, designable positions
  start masked. On a T-step grid, step k reveals exactly K = ceil(n / (T - k)) of the n still-masked
  positions, chosen uniformly at random, each filled with a letter drawn from the model's marginal at
  that position; the last step reveals the rest. (With the linear grid m_k = 1 - k / T this is
  K = ceil(n (m_k - m_{k+1}) / m_k), which is how `step` computes it from the two mask levels.)

The positions are chosen independently of the model, so in log p(x_s | x_t) their choice is the
constant -log C(n, K); `revealed_log_prob` (the model-dependent part that every fine-tuning objective
differentiates) is the same sum of log p(x_0 = x_s | x_t) over revealed positions as in MDLM, and
`step_log_prob` adds the constant (or is -inf for a transition the chain cannot make). The trainer,
VIDD and the baselines therefore run on these models unchanged. `elbo` / `loss` are the masked-diffusion
bounds with only designable positions noised (each independently, with probability m(t) = t): the
continuous-time order-agnostic bound, used for naturalness scores, not the exact bound of the K-per-step
chain.

Loaders (`antiberty_prior`, `load_esm2`, `load_evodiff_oadm`, `from_hf_masked_lm`) build the backbone
from local files only; checkpoints of the resulting models hold the LM's config and weights, so they
load without the original files.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from vidd.core.alphabets import PROTEIN, Alphabet
from vidd.diffusion.backbones import Backbone
from vidd.diffusion.masked import MaskedDiffusion, uniform, gumbel_argmax
from vidd.diffusion.schedule import LinearSchedule, NoiseSchedule
from vidd.core.extras import require


# ------------------------------------------------------------------ architectures
@dataclass(frozen=True)
class Architecture:
    """How to build one masked-LM class from its config dict and get its logits (B, L', vocab)."""

    name: str
    build: Callable[[dict], nn.Module]
    logits: Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _bert_config(config: dict):
    transformers = require("transformers", "protein", "a BERT-style masked LM")
    return transformers.BertConfig.from_dict(config)


def _build_bert(config: dict) -> nn.Module:
    transformers = require("transformers", "protein", "a BERT masked LM")
    return transformers.BertForMaskedLM(_bert_config(config))


def _build_esm(config: dict) -> nn.Module:
    transformers = require("transformers", "protein", "an ESM-2 masked LM")
    return transformers.EsmForMaskedLM(transformers.EsmConfig.from_dict(config))


def _build_antiberty(config: dict) -> nn.Module:
    module = require("antiberty.model.AntiBERTy", "protein", "the AntiBERTy prior")
    return module.AntiBERTy(_bert_config(config))


def _build_bytenet(config: dict) -> nn.Module:
    module = require("evodiff.model", "evodiff", "an EvoDiff OA-DM model")
    return module.ByteNetLMTime(**config)


def _bytenet_logits(lm, ids):
    # OA-DM models have no time embedding (timesteps=None): the second argument is a placeholder, as in
    # evodiff's own samplers
    return lm(ids, torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device))


ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (
    Architecture("bert", _build_bert, lambda lm, ids: lm(input_ids=ids).logits),
    Architecture("esm", _build_esm, lambda lm, ids: lm(input_ids=ids).logits),
    Architecture("antiberty", _build_antiberty, lambda lm, ids: lm(input_ids=ids).prediction_logits),
    Architecture("evodiff-bytenet", _build_bytenet, _bytenet_logits),
)}


class MaskedLMBackbone(Backbone):
    """A masked LM as a vidd denoiser: token ids (letters + mask) -> logits over vidd's letters."""

    kind = "masked-lm"
    time_conditioned = False

    @dataclass
    class Config:
        architecture: str  # a key of ARCHITECTURES
        lm_config: dict  # the LM's own config (e.g. BertConfig.to_dict()); rebuilds the network
        token_ids: list[int]  # LM token id of each vidd letter, then of the mask token (V + 1 entries)
        prefix: list[int] = field(default_factory=list)  # special ids before the sequence, e.g. [CLS]
        suffix: list[int] = field(default_factory=list)  # special ids after it, e.g. [SEP]
        source: str = ""  # where the weights came from (documentation only)

    def __init__(self, config: Config, lm: nn.Module | None = None):
        super().__init__()
        if config.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown masked-LM architecture {config.architecture!r}; known: {sorted(ARCHITECTURES)}")
        if len(set(config.token_ids)) != len(config.token_ids):
            raise ValueError("token_ids: every letter and the mask need their own LM token")
        self.config = config
        self.arch = ARCHITECTURES[config.architecture]
        self.lm = lm if lm is not None else self.arch.build(config.lm_config)
        ids = torch.tensor(config.token_ids, dtype=torch.long)
        self.register_buffer("token_ids", ids, persistent=False)
        self.register_buffer("prefix", torch.tensor(config.prefix, dtype=torch.long), persistent=False)
        self.register_buffer("suffix", torch.tensor(config.suffix, dtype=torch.long), persistent=False)

    def train(self, mode: bool = True):
        """The LM always runs in eval mode (no dropout, whatever its config says): the denoiser is a
        deterministic function of its input, like vidd's own backbones (dropout 0), so a seeded CPU run is
        reproducible. Gradients flow as usual."""
        super().train(mode)
        self.lm.eval()
        return self

    def lm_input(self, tokens: torch.Tensor) -> torch.Tensor:
        """vidd token ids (B, L) -> the LM's input ids (B, len(prefix) + L + len(suffix))."""
        b = tokens.shape[0]
        return torch.cat([self.prefix.expand(b, -1), self.token_ids[tokens], self.suffix.expand(b, -1)], dim=1)

    def forward(self, tokens, t):
        if tokens.is_floating_point():
            raise NotImplementedError(
                "a masked-LM adapter takes token ids, not relaxed one-hot rows: methods that differentiate "
                "through samples (drakes) are not supported on adapter models")
        logits = self.arch.logits(self.lm, self.lm_input(tokens))
        start = len(self.config.prefix)
        return logits[:, start:start + tokens.shape[1]][..., self.token_ids[:-1]]


# ------------------------------------------------------------------ the OA chain
class OrderAgnosticDiffusion(MaskedDiffusion):
    """Order-agnostic masked diffusion with in-filling (module docstring): a template fixes some positions."""

    chain = "order-agnostic"

    def __init__(self, backbone: Backbone, alphabet: Alphabet, length: int, schedule: NoiseSchedule | None = None,
                 template: torch.Tensor | None = None):
        super().__init__(backbone, alphabet, length, schedule or LinearSchedule())
        if template is None:
            template = torch.full((length,), alphabet.mask_index, dtype=torch.long)
        template = torch.as_tensor(template, dtype=torch.long)
        if template.shape != (length,) or template.min() < 0 or template.max() > alphabet.mask_index:
            raise ValueError(f"template: expected {length} token ids in [0, {alphabet.mask_index}], "
                             f"got shape {tuple(template.shape)}")
        self.register_buffer("template", template, persistent=False)

    @property
    def designable(self) -> torch.Tensor:
        """(L,) bool: the positions the chain generates (masked in the template)."""
        return self.template == self.mask_index

    def initial_state(self, n: int) -> torch.Tensor:
        return self.template.to(self.device).expand(n, -1).clone()

    @staticmethod
    def reveal_counts(masked: torch.Tensor, reveal: torch.Tensor) -> torch.Tensor:
        """K per row: ceil(n * reveal) of the n masked positions (reveal = (m_t - m_s) / m_t, (B, 1) float64)."""
        n = masked.sum(-1, keepdim=True).double()
        return torch.minimum(torch.ceil(n * reveal - 1e-9).clamp_min(0), n).long()

    def step(self, x_t, log_x0, m_t, m_s, generator=None) -> torch.Tensor:
        """Reveal exactly K uniformly chosen masked positions, each drawn from the model's marginal."""
        mt, ms = self._per_row(m_t, x_t), self._per_row(m_s, x_t)
        masked = x_t == self.mask_index
        k = self.reveal_counts(masked, (mt - ms) / mt)
        keys = torch.where(masked, uniform(x_t.shape, generator, x_t.device, torch.float64),
                           torch.full(x_t.shape, 2.0, dtype=torch.float64, device=x_t.device))
        rank = keys.argsort(-1).argsort(-1)  # rank of each position among the row's random keys
        chosen = masked & (rank < k)
        return torch.where(chosen, gumbel_argmax(log_x0, generator), x_t)

    def step_log_prob(self, x_t, x_s, log_x0, m_t, m_s) -> torch.Tensor:
        """log p(x_s | x_t) = sum over revealed positions of log p(x_0 = x_s | x_t) - log C(n, K); -inf if x_s
        reveals other than K positions or changes an unmasked one."""
        mt, ms = self._per_row(m_t, x_t), self._per_row(m_s, x_t)
        masked = x_t == self.mask_index
        k = self.reveal_counts(masked, (mt - ms) / mt).squeeze(-1)
        n = masked.sum(-1)
        revealed = (masked & (x_s != self.mask_index)).sum(-1)
        log_choose = torch.lgamma(n + 1.0) - torch.lgamma(k + 1.0) - torch.lgamma(n - k + 1.0)
        lp = self.revealed_log_prob(x_t, x_s, log_x0) - log_choose.to(log_x0.dtype)
        impossible = (revealed != k) | (~masked & (x_s != x_t)).any(-1)
        return torch.where(impossible, torch.full_like(lp, float("-inf")), lp)

    def noise(self, x0: torch.Tensor, mask_prob: torch.Tensor, generator=None) -> torch.Tensor:
        """q(x_t | x_0) on the designable positions only; fixed positions are never masked."""
        noised = super().noise(x0, mask_prob, generator)
        return torch.where(self.designable.to(x0.device), noised, x0)

    def spec(self) -> dict:
        return {**super().spec(), "template": self.template.tolist()}

    @classmethod
    def from_spec(cls, spec: dict) -> OrderAgnosticDiffusion:
        model = super().from_spec(spec)  # the backbone, alphabet, length and schedule
        model.template = torch.tensor(spec["template"], dtype=torch.long)
        return model


def template_tokens(alphabet: Alphabet, sequence: str, designable) -> torch.Tensor:
    """Token ids of `sequence` with the `designable` positions (indices, a slice or a bool mask) masked."""
    tokens = alphabet.encode([sequence])[0]
    mask = torch.zeros(len(tokens), dtype=torch.bool)
    mask[designable] = True
    return torch.where(mask, torch.full_like(tokens, alphabet.mask_index), tokens)


# ------------------------------------------------------------------ loaders
def vocabulary_ids(vocab: dict[str, int], alphabet: Alphabet, mask_token: str) -> list[int]:
    """LM ids of the alphabet's letters and of the LM's mask token, with an error naming a missing one."""
    missing = [c for c in (*alphabet.letters, mask_token) if c not in vocab]
    if missing:
        raise ValueError(f"the LM's vocabulary lacks {missing} (needed for the {alphabet.name} alphabet)")
    return [vocab[c] for c in alphabet.letters] + [vocab[mask_token]]


def adapter_model(backbone: MaskedLMBackbone, alphabet: Alphabet, length: int | None = None,
                  template: torch.Tensor | None = None) -> OrderAgnosticDiffusion:
    """An eval-mode OA model around `backbone`: a template (in-filling) or `length` all-designable positions."""
    if template is None and length is None:
        raise ValueError("give a template or a length")
    length = len(template) if template is not None else length
    return OrderAgnosticDiffusion(backbone, alphabet, length, template=template).eval()


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
    payload = torch.load(checkpoint, map_location="cpu", weights_only=False)
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


# AntiBERTy: 26M-parameter antibody BERT; its weights ship inside the antiberty==0.1.3 wheel (MIT) and are
# loaded with the model class of the current antiberty package (1.0.0), see docs/tasks/antibody.md
ANTIBERTY_VOCAB = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"ACDEFGHIKLMNPQRSTVWY")


def antiberty_files():
    """The AntiBERTy weight files of the antiberty==0.1.3 wheel, as `vidd.data.fetch.WheelFile`s."""
    from vidd.data.fetch import WheelFile

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
    from vidd.data.fetch import fetch_wheel_files

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


def reveal_schedule(designable: int, steps: int) -> list[int]:
    """The K of each step of the OA chain for `designable` masked positions and `steps` steps (documentation
    and tests): K_k = ceil(n_k / (steps - k))."""
    out, n = [], designable
    for k in range(steps):
        reveal = math.ceil(n / (steps - k) - 1e-9)
        out.append(reveal)
        n -= reveal
    return out
