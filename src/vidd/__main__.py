"""`python -m vidd ...`, e.g. `torchrun --nproc_per_node 2 -m vidd finetune TASK ...` (docs/scaling.md)."""

from vidd.cli import app

if __name__ == "__main__":
    app(prog_name="vidd")
