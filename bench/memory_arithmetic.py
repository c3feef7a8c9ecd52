"""Expected GPU memory of fine-tuning a large masked-LM prior, by arithmetic (nothing is trained or measured).

The model is built on PyTorch's meta device (shapes, no weights, no download) from its published config, so
the parameter counts are exact; LoRA adapters are injected the way `model.finetune=lora` does and counted.
Bytes follow from the dtypes: what each `model` setting holds (the three models, gradients, Adam's two
moments) plus an activation estimate for the backward pass of one loss chunk: per transformer layer and
example, L h (34 + 5 a L / h) bytes in 16-bit precision (Korthikanti et al. 2022, "Reducing activation
recomputation in large transformer models", without sequence parallelism; twice that in fp32), or, with
gradient checkpointing, the layer inputs (2 L h bytes per layer) plus one layer's activations.

    python bench/memory_arithmetic.py --length 256 --loss-chunk 32      # protein-ss paper preset (committed)
    python bench/memory_arithmetic.py --length 256 --loss-chunk 8 --rank 16
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from vidd.core import config as cfg
from vidd.training.copies import ModelConfig, ModelCopies
from vidd.diffusion.lm_backbone import MaskedLMBackbone
from vidd.diffusion.loaders import adapter_model
from vidd.core.alphabets import PROTEIN

#: facebook/esm2_t33_650M_UR50D's config.json (the fields that set the shapes)
ESM2_650M = {"vocab_size": 33, "hidden_size": 1280, "num_hidden_layers": 33, "num_attention_heads": 20,
             "intermediate_size": 5120, "max_position_embeddings": 1026, "position_embedding_type": "rotary",
             "token_dropout": True, "emb_layer_norm_before": False, "mask_token_id": 32, "pad_token_id": 1}
GB = 1e9
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def esm2_650m_on_meta():
    transformers = __import__("transformers")
    with torch.device("meta"):
        lm = transformers.EsmForMaskedLM(transformers.EsmConfig(**ESM2_650M))
    backbone = MaskedLMBackbone(MaskedLMBackbone.Config("esm", lm.config.to_dict(), list(range(4, 24)) + [32],
                                                        [0], [2]), lm)
    return adapter_model(backbone, PROTEIN, length=8)


def lora_parameters(model, rank: int) -> int:
    copies = ModelCopies(copy.deepcopy(model), cfg.build(ModelConfig, {"finetune": "lora", "lora_rank": rank}))
    return sum(p.numel() for p in copies.trainable_parameters())


def activations(length: int, chunk: int, hidden: int, heads: int, layers: int, precision: str,
                checkpointing: bool) -> float:
    scale = BYTES[precision] / 2
    per_layer = length * hidden * (34 + 5 * heads * length / hidden) * scale * chunk
    if checkpointing:
        return layers * 2 * length * hidden * scale * chunk + per_layer
    return layers * per_layer


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--length", type=int, default=128, help="designed residues (the LM sees 2 special tokens more)")
    ap.add_argument("--loss-chunk", type=int, default=16, help="training examples per forward/backward")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--out", default="bench/results/memory_arithmetic.json")
    args = ap.parse_args()
    model = esm2_650m_on_meta()
    n = sum(p.numel() for p in model.parameters())
    n_lora = lora_parameters(model, args.rank)
    length = args.length + 2
    h, a, layers = ESM2_650M["hidden_size"], ESM2_650M["num_attention_heads"], ESM2_650M["num_hidden_layers"]
    settings = [
        ("full, fp32 (vidd's default)", "full", "fp32", "fp32", False),
        ("full, bf16 autocast, frozen copies bf16", "full", "bf16", "bf16", False),
        ("LoRA, fp32", "lora", "fp32", "fp32", False),
        ("LoRA, bf16 autocast, base bf16", "lora", "bf16", "bf16", False),
        ("LoRA, bf16, base bf16, gradient checkpointing", "lora", "bf16", "bf16", True),
    ]
    rows = []
    for name, finetune, precision, frozen, checkpointing in settings:
        if finetune == "full":  # student (fp32) + gradients + Adam (2 moments), and the two frozen copies
            weights = {"student + gradients + Adam": 4 * n * 4, "pretrained + roll-out": 2 * n * BYTES[frozen]}
        else:  # the student's adapters, gradients and Adam moments (fp32); one shared base + roll-out adapters
            weights = {"student + gradients + Adam": 4 * n_lora * 4,
                       "pretrained + roll-out": n * BYTES[frozen] + n_lora * 4}
        act = activations(length, args.loss_chunk, h, a, layers, precision, checkpointing)
        rows.append({"setting": name, **{k: v / GB for k, v in weights.items()},
                     "weights_and_optimizer_gb": sum(weights.values()) / GB, "activations_gb": act / GB,
                     "total_gb": (sum(weights.values()) + act) / GB})
    table = Table(title=f"ESM-2 650M ({n / 1e6:.0f}M parameters; LoRA rank {args.rank}: {n_lora / 1e6:.2f}M), "
                        f"length {args.length}, loss_chunk {args.loss_chunk}: ARITHMETIC, not measured")
    for col in ("setting", "student+grad+Adam GB", "frozen GB", "weights+optimiser GB", "activations GB",
                "total GB"):
        table.add_column(col, justify="left" if col == "setting" else "right")
    for r in rows:
        table.add_row(r["setting"], f"{r['student + gradients + Adam']:.2f}", f"{r['pretrained + roll-out']:.2f}",
                      f"{r['weights_and_optimizer_gb']:.2f}", f"{r['activations_gb']:.2f}", f"{r['total_gb']:.2f}")
    Console(width=130).print(table)
    out = {"model": "facebook/esm2_t33_650M_UR50D (config only)", "parameters": n, "lora_rank": args.rank,
           "lora_parameters": n_lora, "length": args.length, "loss_chunk": args.loss_chunk, "rows": rows,
           "note": "arithmetic from dtypes and an activation formula; nothing measured"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
