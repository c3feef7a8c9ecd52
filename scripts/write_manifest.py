"""Write src/vidd/assets/MANIFEST.json: path, sha256, bytes, the commands that produced each committed
asset, and its quality figures (read from the report files next to it). A model folder (config.json +
model.safetensors) is one entry whose `files` give each file's sha256 and bytes; vidd verifies every asset
against this file when it first loads it (vidd.core.manifest).

    .venv/bin/python scripts/write_manifest.py
"""

from __future__ import annotations

import json
from pathlib import Path

from vidd.core.manifest import checksums

ROOT = Path(__file__).resolve().parents[1]
ENV = "VIDD_CACHE=<cache> (any), run from the repository root"

# vidd 0.1 wrote models and oracles as pickled .pt files; each was converted once into a model folder (the same
# weights, bit for bit) by this command, and the .pt removed
CONVERT = ("vidd convert-checkpoint {old} {new} --trust-checkpoint && git rm {old}   # the pickled .pt of vidd 0.1 "
           "as a model folder (config.json + model.safetensors, the same weights bit for bit)")


def converted(path: str) -> str:
    return CONVERT.format(old=f"{path}.pt", new=path)


PRETRAIN = ("vidd pretrain --task dhs-hepg2 --out runs/pretrain-dhs --set model.hidden=64 --set model.stacks=2 "
            "--set lr=2e-3 --set batch_size=64 --set eval_every=500 --set seed=0")
ASSETS = {
    "src/vidd/assets/dhs-hepg2/pretrained": {
        "what": "masked diffusion model (dilated CNN, hidden 64, 2 stacks x dilations 1,1,4,16,64, kernel 9, "
                "log-linear schedule, no time conditioning; EMA 0.999 weights at the best validation ELBO)",
        "commands": [
            PRETRAIN + " --set epochs=6   # stopped after the step-500 checkpoint (CPU contention)",
            PRETRAIN + " --set epochs=5 --set threads=1 --resume   # continued; stopped after the step-2000 checkpoint",
            PRETRAIN + " --set epochs=5 --set threads=2 --resume   # continued to the end (step 3065)",
            "cp runs/pretrain-dhs/model.pt src/vidd/assets/dhs-hepg2/pretrained.pt   # today's vidd pretrain writes the "
            "model folder runs/pretrain-dhs/model instead",
            converted("src/vidd/assets/dhs-hepg2/pretrained"),
        ],
        "quality": "src/vidd/assets/dhs-hepg2/pretrained-report.json",
    },
    "src/vidd/assets/dhs-hepg2/pretrained-report.json": {
        "what": "held-out quality of the pretrained model (made from pretrained.pt, before its conversion)",
        "commands": ["vidd model-report --task dhs-hepg2 --samples 1000 --json src/vidd/assets/dhs-hepg2/pretrained-report.json"],
    },
    "src/vidd/assets/dhs-hepg2/oracle-train": {
        "what": "training oracle: CNN cell-type classifier on half 0 of the training split, seed 1",
        "commands": ["vidd train-oracle --task dhs-hepg2 --set half=0 --set seed=1 --out src/vidd/assets/dhs-hepg2/oracle-train.pt"
                     "   # vidd 0.1 wrote a pickled .pt; today's --out is a folder (src/vidd/assets/dhs-hepg2/oracle-train)",
                     converted("src/vidd/assets/dhs-hepg2/oracle-train")],
        "quality": "src/vidd/assets/dhs-hepg2/oracle-report.json",
    },
    "src/vidd/assets/dhs-hepg2/oracle-eval": {
        "what": "evaluation oracle: CNN cell-type classifier on half 1 of the training split, seed 2",
        "commands": ["vidd train-oracle --task dhs-hepg2 --set half=1 --set seed=2 --out src/vidd/assets/dhs-hepg2/oracle-eval.pt"
                     "   # vidd 0.1 wrote a pickled .pt; today's --out is a folder (src/vidd/assets/dhs-hepg2/oracle-eval)",
                     converted("src/vidd/assets/dhs-hepg2/oracle-eval")],
        "quality": "src/vidd/assets/dhs-hepg2/oracle-report.json",
    },
    "src/vidd/assets/dhs-hepg2/oracle-report.json": {
        "what": "test-split (chr1) AUROC / accuracy of both oracles and their agreement (made from the .pt "
                "files, before their conversion; today: the same command on src/vidd/assets/dhs-hepg2/oracle-train and "
                "src/vidd/assets/dhs-hepg2/oracle-eval)",
        "commands": ["vidd oracle-report --task dhs-hepg2 src/vidd/assets/dhs-hepg2/oracle-train.pt "
                     "src/vidd/assets/dhs-hepg2/oracle-eval.pt --json src/vidd/assets/dhs-hepg2/oracle-report.json"],
    },
    "src/vidd/assets/moses/pretrained": {
        "what": "SELFIES masked diffusion model for small molecules (transformer, hidden 256, 4 layers, 8 heads, "
                "3.19M parameters, 56 positions, 25 SELFIES tokens + [nop] padding, log-linear schedule, no time "
                "conditioning; EMA 0.999 weights at the best validation ELBO, 0.708 bits/token) trained for 50 epochs "
                "on 200,000 MOSES training molecules (seeded subset)",
        "commands": [
            "vidd pretrain --task moses-qed --out runs/pretrain-moses --set model.backbone=transformer "
            "--set model.hidden=256 --set model.layers=4 --set model.heads=8 --set batch_size=512 --set lr=2e-3 "
            "--set warmup_steps=500 --set epochs=50 --set eval_every=1000 --set device=cuda --set seed=0",
            "cp runs/pretrain-moses/model.pt src/vidd/assets/moses/pretrained.pt   # today's vidd pretrain writes the "
            "model folder runs/pretrain-moses/model instead",
            converted("src/vidd/assets/moses/pretrained"),
        ],
        "environment": "one NVIDIA H100 (torch 2.11.0+cu130, Python 3.12), 8.5 minutes; VIDD_CACHE=<cache> (any) "
                       "holding the SELFIES corpus that `vidd pretrain --task moses-qed` builds on first use; "
                       "run from the repository root. Without --set device=cuda the same command trains on the CPU "
                       "(19,500 steps of 512 molecules: many hours on 2 cores)",
        "quality": "src/vidd/assets/moses/pretrained-report.json",
    },
    "src/vidd/assets/moses/pretrained-report.json": {
        "what": "MOSES metrics of 10,000 samples of the pretrained model (made from src/vidd/assets/moses/pretrained.pt, "
                "before its conversion) against 10,000 MOSES test molecules",
        "commands": ["vidd model-report --task moses-qed --samples 10000 --device cuda "
                     "--json src/vidd/assets/moses/pretrained-report.json"],
        "environment": "one NVIDIA H100 (torch 2.11.0+cu130, NumPy 2.5, Python 3.12), 94 s; random draws come "
                       "from a CPU generator, so --device cpu samples the same molecules up to floating-point "
                       "rounding (the CPU run was stopped unfinished after 16 minutes of sampling on 2 busy cores); VIDD_CACHE=<cache> (any), run from the repository root",
    },
}


def main() -> None:
    files = []
    for rel, entry in ASSETS.items():
        record = {"path": rel, **checksums(ROOT / rel), "what": entry["what"], "commands": entry["commands"],
                  "environment": entry.get("environment", ENV)}
        if "quality" in entry:
            record["quality"] = json.loads((ROOT / entry["quality"]).read_text())
        files.append(record)
    out = ROOT / "src" / "vidd" / "assets" / "MANIFEST.json"
    out.write_text(json.dumps({"files": files}, indent=2) + "\n")
    print(f"wrote {out} ({len(files)} files)")


if __name__ == "__main__":
    main()
