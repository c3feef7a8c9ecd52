"""Write assets/MANIFEST.json: path, sha256, bytes, the commands that produced each committed
asset, and its quality figures (read from the report files next to it).

    .venv/bin/python scripts/write_manifest.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = "VIDD_CACHE=<cache> (any), run from the repository root"

PRETRAIN = ("vidd pretrain --task dhs-hepg2 --out runs/pretrain-dhs --set model.hidden=64 --set model.stacks=2 "
            "--set lr=2e-3 --set batch_size=64 --set eval_every=500 --set seed=0")
ASSETS = {
    "assets/dhs-hepg2/pretrained.pt": {
        "what": "masked diffusion model (dilated CNN, hidden 64, 2 stacks x dilations 1,1,4,16,64, kernel 9, "
                "log-linear schedule, no time conditioning; EMA 0.999 weights at the best validation ELBO)",
        "commands": [
            PRETRAIN + " --set epochs=6   # stopped after the step-500 checkpoint (CPU contention)",
            PRETRAIN + " --set epochs=5 --set threads=1 --resume   # continued; stopped after the step-2000 checkpoint",
            PRETRAIN + " --set epochs=5 --set threads=2 --resume   # continued to the end (step 3065)",
            "cp runs/pretrain-dhs/model.pt assets/dhs-hepg2/pretrained.pt",
        ],
        "quality": "assets/dhs-hepg2/pretrained-report.json",
    },
    "assets/dhs-hepg2/pretrained-report.json": {
        "what": "held-out quality of pretrained.pt",
        "commands": ["vidd model-report --task dhs-hepg2 --samples 1000 --json assets/dhs-hepg2/pretrained-report.json"],
    },
    "assets/dhs-hepg2/oracle-train.pt": {
        "what": "training oracle: CNN cell-type classifier on half 0 of the training split, seed 1",
        "commands": ["vidd train-oracle --task dhs-hepg2 --set half=0 --set seed=1 --out assets/dhs-hepg2/oracle-train.pt"],
        "quality": "assets/dhs-hepg2/oracle-report.json",
    },
    "assets/dhs-hepg2/oracle-eval.pt": {
        "what": "evaluation oracle: CNN cell-type classifier on half 1 of the training split, seed 2",
        "commands": ["vidd train-oracle --task dhs-hepg2 --set half=1 --set seed=2 --out assets/dhs-hepg2/oracle-eval.pt"],
        "quality": "assets/dhs-hepg2/oracle-report.json",
    },
    "assets/dhs-hepg2/oracle-report.json": {
        "what": "test-split (chr1) AUROC / accuracy of both oracles and their agreement",
        "commands": ["vidd oracle-report --task dhs-hepg2 assets/dhs-hepg2/oracle-train.pt "
                     "assets/dhs-hepg2/oracle-eval.pt --json assets/dhs-hepg2/oracle-report.json"],
    },
    "assets/moses/pretrained.pt": {
        "what": "SELFIES masked diffusion model for small molecules (transformer, hidden 192, 4 layers, 4 heads, "
                "56 positions, 25 SELFIES tokens + [nop] padding, log-linear schedule; EMA 0.999 weights at the best "
                "validation ELBO) trained on 200,000 MOSES training molecules (seeded subset)",
        "commands": [
            "vidd pretrain --task moses-qed --out runs/moses-pretrain --set model.backbone=transformer "
            "--set model.hidden=192 --set model.layers=4 --set model.heads=4 --set epochs=2 --set batch_size=64 "
            "--set lr=7e-4 --set warmup_steps=300 --set eval_every=500 --set threads=1",
            "cp runs/moses-pretrain/model.pt assets/moses/pretrained.pt",
        ],
        "quality": "assets/moses/pretrained-report.json",
    },
    "assets/moses/pretrained-report.json": {
        "what": "MOSES metrics of 10,000 samples of assets/moses/pretrained.pt against 10,000 MOSES test molecules",
        "commands": ["vidd model-report --task moses-qed --samples 10000 --json assets/moses/pretrained-report.json"],
    },
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    files = []
    for rel, entry in ASSETS.items():
        path = ROOT / rel
        record = {"path": rel, "sha256": sha256(path), "bytes": path.stat().st_size,
                  "what": entry["what"], "commands": entry["commands"], "environment": ENV}
        if "quality" in entry:
            record["quality"] = json.loads((ROOT / entry["quality"]).read_text())
        files.append(record)
    out = ROOT / "assets" / "MANIFEST.json"
    out.write_text(json.dumps({"files": files}, indent=2) + "\n")
    print(f"wrote {out} ({len(files)} files)")


if __name__ == "__main__":
    main()
