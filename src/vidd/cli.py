"""The `vidd` command: every command is a thin call into the library."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vidd import config as cfg

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Reward-guided fine-tuning of masked discrete diffusion models (VIDD and baselines).")

CONFIG_OPT = typer.Option(None, "--config", help="YAML file with config fields")
SET_OPT = typer.Option([], "--set", help="override a config field: key=value (dotted keys for nested fields)")


@app.callback()
def _root() -> None:
    """vidd: reward-guided fine-tuning of diffusion models for biomolecular design."""


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def layers(config_file: Optional[Path], overrides: list[str]) -> list[dict]:
    return [cfg.load_yaml(config_file) if config_file else {}, cfg.parse_overrides(overrides)]


@app.command()
def pretrain(
    out: Path = typer.Option(..., "--out", help="output folder (model.pt, state.pt, log.jsonl)"),
    task: Optional[str] = typer.Option(None, "--task", help="train on this task's training split"),
    data: Optional[Path] = typer.Option(None, "--data", help="FASTA file of training sequences"),
    valid: Optional[Path] = typer.Option(None, "--valid", help="FASTA file of validation sequences"),
    alphabet: str = typer.Option("DNA", "--alphabet", help="alphabet of --data: DNA or protein"),
    config_file: Optional[Path] = CONFIG_OPT,
    overrides: list[str] = SET_OPT,
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out"),
):
    """Pretrain a masked diffusion model on a task's training split or on a FASTA file."""
    from vidd.diffusion.pretrain import PretrainConfig, pretrain as run
    from vidd.errors import UserError

    try:
        config = cfg.build(PretrainConfig, *layers(config_file, overrides))
        if (task is None) == (data is None):
            fail("give exactly one of --task or --data")
        if task:
            from vidd.tasks import Task

            t = Task.get(task)
            train, val, alpha = *t.pretrain_sequences(), t.alphabet
        else:
            from vidd import alphabets
            from vidd.seqio import read_sequences

            alpha = {"DNA": alphabets.DNA, "protein": alphabets.PROTEIN}.get(alphabet)
            if alpha is None:
                fail(f"--alphabet must be DNA or protein, got {alphabet!r}")
            train = read_sequences(data, alpha)
            if valid:
                val = read_sequences(valid, alpha, length=len(train[0]))
            else:
                cut = max(1, len(train) // 20)
                train, val = train[cut:], train[:cut]
        run(config, alpha, train, val, out, resume=resume, log=typer.echo)
    except UserError as e:
        fail(str(e))
    typer.echo(f"saved {out / 'model.pt'}")


def main():
    app()
