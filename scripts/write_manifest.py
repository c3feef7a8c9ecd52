"""Write src/vidd/assets/MANIFEST.json: path, sha256, bytes, the commands that produced each committed
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
    "src/vidd/assets/dhs-hepg2/pretrained.pt": {
        "what": "masked diffusion model (dilated CNN, hidden 64, 2 stacks x dilations 1,1,4,16,64, kernel 9, "
                "log-linear schedule, no time conditioning; EMA 0.999 weights at the best validation ELBO)",
        "commands": [
            PRETRAIN + " --set epochs=6   # stopped after the step-500 checkpoint (CPU contention)",
            PRETRAIN + " --set epochs=5 --set threads=1 --resume   # continued; stopped after the step-2000 checkpoint",
            PRETRAIN + " --set epochs=5 --set threads=2 --resume   # continued to the end (step 3065)",
            "cp runs/pretrain-dhs/model.pt src/vidd/assets/dhs-hepg2/pretrained.pt",
        ],
        "quality": "src/vidd/assets/dhs-hepg2/pretrained-report.json",
    },
    "src/vidd/assets/dhs-hepg2/pretrained-report.json": {
        "what": "held-out quality of pretrained.pt",
        "commands": ["vidd model-report --task dhs-hepg2 --samples 1000 --json src/vidd/assets/dhs-hepg2/pretrained-report.json"],
    },
    "src/vidd/assets/dhs-hepg2/oracle-train.pt": {
        "what": "training oracle: CNN cell-type classifier on half 0 of the training split, seed 1",
        "commands": ["vidd train-oracle --task dhs-hepg2 --set half=0 --set seed=1 --out src/vidd/assets/dhs-hepg2/oracle-train.pt"],
        "quality": "src/vidd/assets/dhs-hepg2/oracle-report.json",
    },
    "src/vidd/assets/dhs-hepg2/oracle-eval.pt": {
        "what": "evaluation oracle: CNN cell-type classifier on half 1 of the training split, seed 2",
        "commands": ["vidd train-oracle --task dhs-hepg2 --set half=1 --set seed=2 --out src/vidd/assets/dhs-hepg2/oracle-eval.pt"],
        "quality": "src/vidd/assets/dhs-hepg2/oracle-report.json",
    },
    "src/vidd/assets/dhs-hepg2/oracle-report.json": {
        "what": "test-split (chr1) AUROC / accuracy of both oracles and their agreement",
        "commands": ["vidd oracle-report --task dhs-hepg2 src/vidd/assets/dhs-hepg2/oracle-train.pt "
                     "src/vidd/assets/dhs-hepg2/oracle-eval.pt --json src/vidd/assets/dhs-hepg2/oracle-report.json"],
    },
    "src/vidd/assets/moses/pretrained.pt": {
        "what": "SELFIES masked diffusion model for small molecules (transformer, hidden 256, 4 layers, 8 heads, "
                "3.19M parameters, 56 positions, 25 SELFIES tokens + [nop] padding, log-linear schedule, no time "
                "conditioning; EMA 0.999 weights at the best validation ELBO, 0.708 bits/token) trained for 50 epochs "
                "on 200,000 MOSES training molecules (seeded subset)",
        "commands": [
            "vidd pretrain --task moses-qed --out runs/pretrain-moses --set model.backbone=transformer "
            "--set model.hidden=256 --set model.layers=4 --set model.heads=8 --set batch_size=512 --set lr=2e-3 "
            "--set warmup_steps=500 --set epochs=50 --set eval_every=1000 --set device=cuda --set seed=0",
            "cp runs/pretrain-moses/model.pt src/vidd/assets/moses/pretrained.pt",
        ],
        "environment": "one NVIDIA H100 (torch 2.11.0+cu130, Python 3.12), 8.5 minutes; VIDD_CACHE=<cache> (any) "
                       "holding the SELFIES corpus that `vidd pretrain --task moses-qed` builds on first use; "
                       "run from the repository root. Without --set device=cuda the same command trains on the CPU "
                       "(19,500 steps of 512 molecules: many hours on 2 cores)",
        "quality": "src/vidd/assets/moses/pretrained-report.json",
    },
    "src/vidd/assets/moses/pretrained-report.json": {
        "what": "MOSES metrics of 10,000 samples of src/vidd/assets/moses/pretrained.pt against 10,000 MOSES test molecules",
        "commands": ["vidd model-report --task moses-qed --samples 10000 --device cuda "
                     "--json src/vidd/assets/moses/pretrained-report.json"],
        "environment": "one NVIDIA H100 (torch 2.11.0+cu130, NumPy 2.5, Python 3.12), 94 s; random draws come "
                       "from a CPU generator, so --device cpu samples the same molecules up to floating-point "
                       "rounding (the CPU run was stopped unfinished after 16 minutes of sampling on 2 busy cores); VIDD_CACHE=<cache> (any), run from the repository root",
    },
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    files = []
    for rel, entry in ASSETS.items():
        path = ROOT / rel
        record = {"path": rel, "sha256": sha256(path), "bytes": path.stat().st_size,
                  "what": entry["what"], "commands": entry["commands"], "environment": entry.get("environment", ENV)}
        if "quality" in entry:
            record["quality"] = json.loads((ROOT / entry["quality"]).read_text())
        files.append(record)
    out = ROOT / "src" / "vidd" / "assets" / "MANIFEST.json"
    out.write_text(json.dumps({"files": files}, indent=2) + "\n")
    print(f"wrote {out} ({len(files)} files)")


if __name__ == "__main__":
    main()
