"""The `vidd` command: every command is a thin call into the library."""

from __future__ import annotations

import csv
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch
import typer
from rich.console import Console
from rich.table import Table

from vidd import __version__
from vidd.bench import BenchPlan, load_variants, lr_sweep, run_bench
from vidd.core import config as cfg
from vidd.core.atomic import atomic_open
from vidd.core.devices import check_available
from vidd.core.errors import UserError
from vidd.core.runfolder import RunFolder
from vidd.core.safefiles import load_trusted
from vidd.core.seqio import write_table
from vidd.data import dhs
from vidd.data.corpus import load_corpus, read_corpus, seeded_subset
from vidd.data.assays import read_labelled, write_synthetic_h3_library
from vidd.diffusion.masked import MaskedDiffusion
from vidd.diffusion.pretrain import PretrainConfig, pretrain as run_pretraining
from vidd.eval.report import write_report
from vidd.rewards import oracle
from vidd.rewards.assay_oracle import (
    ALPHABET_NAMES, SPEC_FILE, AssayOracle, AssayOracleConfig, score_table, train_assay_oracle,
)
from vidd.rewards.oracle import OracleConfig, load_classifier, oracle_report, train_oracle
from vidd.rewards.specs import FORMS, absolute_spec
from vidd.run import build_run, finetune_config, resume_config, run_task, write_task_report
from vidd.tasks import Task
from vidd.tasks.custom import CUSTOM
from vidd.training import FinetuneConfig
from vidd.training.objectives import Method

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Reward-guided fine-tuning of masked discrete diffusion models (VIDD and baselines).")

CONFIG_OPT = typer.Option(None, "--config", help="YAML file with config fields")
SET_OPT = typer.Option([], "--set", help="override a config field: key=value (dotted keys for nested fields)")
TASK_SET_OPT = typer.Option([], "--task-set", help="a task setting key=value, as a run's `--set task.KEY=VALUE` "
                                                   "(e.g. protein-ss: --task-set length=64)")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"vidd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print vidd's version and exit")) -> None:
    """vidd: reward-guided fine-tuning of diffusion models for biomolecular design."""


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@contextmanager
def user_errors():
    """Errors caused by the user's input end the command with a message, not a traceback."""
    try:
        yield
    except (UserError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
            PermissionError) as e:
        fail(str(e))


def write_json(path: Path, obj) -> None:
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2)


def check_output_file(path: Path, option: str, overwrite: bool) -> None:
    """An output file can be written at `path` (before any work starts)."""
    if path.is_dir():
        fail(f"{option} {path}: is a folder; give a file name")
    if path.exists() and not overwrite:
        fail(f"{option} {path}: exists; pass --force to overwrite it")
    folder = next(p for p in path.absolute().parents if p.exists())
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        fail(f"{option} {path}: cannot be written ({folder} is not a writable folder)")


TRUST_OPT = typer.Option(False, "--trust-checkpoint",
                         help="also read a vidd 0.1 `.pt` checkpoint (pickle), by a restricted unpickler that refuses any call hidden in "
                              "the file, so only for files whose origin you trust (docs/reliability.md)")


def layers(config_file: Optional[Path], overrides: list[str]) -> list[dict]:
    return [cfg.load_yaml(config_file) if config_file else {}, cfg.parse_overrides(overrides)]


@app.command()
def pretrain(
    out: Path = typer.Option(..., "--out", help="output folder (model/, state.pt, log.jsonl)"),
    task: Optional[str] = typer.Option(None, "--task", help="train on this task's training split"),
    data: Optional[Path] = typer.Option(None, "--data", help="training sequences: FASTA (any lengths), a CSV/TSV "
                                        "table (.csv, .tsv, with --column) or SMILES (.smi, read as SELFIES); "
                                        "docs/data.md"),
    valid: Optional[Path] = typer.Option(None, "--valid", help="validation sequences, a file like --data (default: "
                                         "the first 1/20 of --data)"),
    column: Optional[str] = typer.Option(None, "--column", help="the column of sequences of a CSV/TSV --data/--valid"),
    alphabet: Optional[str] = typer.Option(None, "--alphabet", help="alphabet of --data: DNA (default), RNA, protein, "
                                           "SELFIES (default for SMILES) or custom:LETTERS, e.g. custom:ACDE; "
                                           "varying lengths add a padding token"),
    config_file: Optional[Path] = CONFIG_OPT,
    overrides: list[str] = SET_OPT,
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out"),
    trust_checkpoint: bool = TRUST_OPT,
):
    """Pretrain a masked diffusion model on a task's training split or on your sequences (FASTA, CSV/TSV, SMILES)."""
    with user_errors():
        config = cfg.build(PretrainConfig, *layers(config_file, overrides))
        if (task is None) == (data is None):
            fail("give exactly one of --task or --data")
        if task:
            t = Task.get(task)
            size = config.train_sequences  # passed only when set: a task's pretrain_sequences() without it works
            train, val = t.pretrain_sequences(size) if size else t.pretrain_sequences()
            alpha, length = t.pretrain_alphabet(train), t.length
        else:
            corpus = load_corpus(data, valid, alphabet, column)
            alpha, val, length = corpus.alphabet, corpus.valid, corpus.length
            train = seeded_subset(corpus.train, config.train_sequences)
        run_pretraining(config, alpha, train, val, out, resume=resume, log=typer.echo, length=length,
                        trust_checkpoint=trust_checkpoint)
    typer.echo(f"saved {out / 'model'}")


@app.command("train-oracle")
def train_oracle_cmd(
    out: Path = typer.Option(..., "--out", help="output folder: a cell-type oracle (config.json + model.safetensors, "
                                                "--task) or an assay oracle (--data)"),
    task: Optional[str] = typer.Option(None, "--task", help="task whose cell-type oracle to train (dhs-hepg2, the "
                                                            "default without --data)"),
    data: Optional[Path] = typer.Option(None, "--data", help="CSV/TSV of labelled sequences: train an assay oracle "
                                                             "(docs/oracles.md; fields: `vidd config assay-oracle`)"),
    sequence_column: str = typer.Option("sequence", "--sequence-column", help="--data: the sequence column"),
    label_column: str = typer.Option("label", "--label-column", help="--data: the label column (0/1 or real)"),
    alphabet: Optional[str] = typer.Option(None, "--alphabet", help="--data: DNA, RNA, protein, SELFIES or "
                                                                    "custom:LETTERS"),
    model: Optional[str] = typer.Option(None, "--model", help="--data: cnn, ridge or logistic (field `model`)"),
    features: Optional[str] = typer.Option(None, "--features", help="--data: onehot or kmer (field `features`)"),
    ensemble: Optional[int] = typer.Option(None, "--ensemble", help="--data: ensemble members (field `ensemble`)"),
    config_file: Optional[Path] = CONFIG_OPT,
    overrides: list[str] = SET_OPT,
):
    """Train an assay oracle on labelled sequences (--data), or a task's cell-type classifier oracle on one half
    of its training split (--task dhs-hepg2, e.g. --set half=0 --set seed=1)."""
    flags = {k: v for k, v in {"model": model, "features": features, "ensemble": ensemble}.items() if v is not None}
    with user_errors():
        if data is not None:
            if task is not None:
                fail("give --task (a task's cell-type oracle) or --data (an assay oracle), not both")
            if alphabet is None:
                fail(f"--data needs --alphabet: one of {', '.join(ALPHABET_NAMES)}")
            config = cfg.build(AssayOracleConfig, *layers(config_file, overrides), flags)
            trained = train_assay_oracle(config, read_labelled(data, sequence_column, label_column), alphabet,
                                         log=typer.echo)
            trained.save(out)
            typer.echo(f"saved {out} (report: {out / SPEC_FILE})")
            return
        if flags or alphabet is not None:
            fail("--alphabet, --model, --features and --ensemble apply to an assay oracle (--data)")
        config = cfg.build(OracleConfig, *layers(config_file, overrides))
        data = _oracle_data(task or "dhs-hepg2")
        test = data["test"]
        model = train_oracle(config, data["train"].sequences, data["train"].labels, data["valid"].sequences,
                             data["valid"].labels, out, log=typer.echo, test=(test.sequences, test.labels))
    m = model.metrics
    typer.echo(f"test HepG2-vs-rest AUROC {m['test_auroc_HepG2']:.4f}, test 4-class accuracy "
               f"{m['test_accuracy']:.4f} (best epoch {m['best_epoch']}, {m['train_seconds']:.0f}s)")
    typer.echo(f"saved {out}")


@app.command("oracle-predict")
def oracle_predict(
    oracle: Path = typer.Argument(..., help="an assay oracle folder (vidd train-oracle --data)"),
    out: Path = typer.Option(..., "--out", help="CSV of the distinct sequences: rank, sequence, count, score, "
                                                "mean, std"),
    run: Optional[Path] = typer.Option(None, "--run", help="score a fine-tuning run's final samples as its task "
                                                          "(--task) gives them to the oracle (antibody tasks: the "
                                                          "CDR-H3 loops)"),
    task: Optional[str] = typer.Option(None, "--task", help="with --run: the run's task"),
    samples: Optional[Path] = typer.Option(None, "--samples", help="FASTA, SMILES or a table (.csv, .tsv, .tab) with "
                                                                  "--column (with --run: a sample file of its task)"),
    sequence_column: Optional[str] = typer.Option(None, "--column", help="the sequence column of a table"),
    pessimism: float = typer.Option(0.0, "--pessimism", help="score = ensemble mean - k std"),
):
    """Score sequences with an assay oracle, best first, to pick designs (docs/oracles.md)."""
    with user_errors():
        if (run is None) != (task is None):
            fail("--run and --task go together: the run folder and its task")
        model = AssayOracle.load(oracle)
        if run is not None:
            folder = RunFolder(run)
            t = run_task(task, resume_config(folder))
            seqs = t.oracle_input(t.read_samples(samples or folder.samples_file("final", t.sample_suffix)), model)
        elif samples is None:
            fail("give --run RUN --task TASK (the run's final samples) or --samples FILE")
        else:
            seqs = read_corpus(samples, sequence_column)
        rows = score_table(model, seqs, pessimism)
        with atomic_open(out) as f:
            writer = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    table = Table(title=f"{oracle}: {len(seqs)} sequences, {len(rows)} distinct (best 10)")
    for column in rows[0]:
        table.add_column(column, justify="left" if column == "sequence" else "right")
    for r in rows[:10]:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()))
    Console().print(table)
    typer.echo(f"wrote {out}")


@app.command("synthetic-assay")
def synthetic_assay(
    out: Path = typer.Option(..., "--out", help="CSV file to write"),
    n: int = typer.Option(2000, "--n", help="number of variants"),
    seed: int = typer.Option(0, "--seed"),
):
    """Write vidd's SYNTHETIC example assay: trastuzumab CDR-H3 variants labelled by a planted rule
    (docs/oracles.md)."""
    with user_errors():
        write_synthetic_h3_library(out, n, seed)
    typer.echo(f"wrote {n} synthetic variants to {out}")


@app.command("oracle-report")
def oracle_report_cmd(
    oracle_a: Path = typer.Argument(..., help="first oracle folder (the one fine-tuned against)"),
    oracle_b: Path = typer.Argument(..., help="second, held-out oracle folder (the evaluator)"),
    task: str = typer.Option("dhs-hepg2", "--task", help="task whose test split to use (dhs-hepg2)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the report as JSON here"),
):
    """Test AUROC and accuracy of two oracles and how much they agree."""
    with user_errors():
        a, b = load_classifier(oracle_a), load_classifier(oracle_b)
        test = _oracle_data(task)["test"]
        report = oracle_report(a, b, test.sequences, test.labels)
    report["oracle_a"]["path"], report["oracle_b"]["path"] = str(oracle_a), str(oracle_b)
    t = report["target"]
    table = Table(title=f"{task} oracles on the test split ({report['n_test']} sequences)")
    table.add_column("oracle")
    table.add_column(f"{t}-vs-rest AUROC", justify="right")
    table.add_column("4-class accuracy", justify="right")
    table.add_column(f"called {t}", justify="right")
    for key, path in (("oracle_a", oracle_a), ("oracle_b", oracle_b)):
        r = report[key]
        table.add_row(str(path), f"{r[f'auroc_{t}']:.4f}", f"{r['accuracy']:.4f}", f"{r[f'fraction_called_{t}']:.3f}")
    console = Console()
    console.print(table)
    ag = report["agreement"]
    agree = Table(title="agreement")
    agree.add_column("measure")
    agree.add_column("value", justify="right")
    agree.add_row(f"Pearson r of {t} log-odds", f"{ag['pearson_log_odds']:.4f}")
    agree.add_row(f"Spearman rho of {t} log-odds", f"{ag['spearman_log_odds']:.4f}")
    agree.add_row(f"same call on p({t}) > 0.5", f"{ag[f'same_call_{t}']:.4f}")
    agree.add_row(f"both call p({t}) > 0.5", f"{ag[f'both_call_{t}']:.4f}")
    console.print(agree)
    if json_out:
        write_json(json_out, report)
        typer.echo(f"wrote {json_out}")


def _oracle_data(task: str) -> dict:
    """The labelled splits an oracle task trains and tests on (only dhs-hepg2 has oracles)."""
    if task != "dhs-hepg2":
        fail(f"no cell-type oracle for task {task!r}; only dhs-hepg2 has one")

    return dhs.load_dhs()


def _resolve_model(task, checkpoint: Optional[Path], trust: bool = False):
    """The model --checkpoint names (a model folder, a run folder or a run checkpoint; default: the task's
    pretrained model), checked against the task."""
    if checkpoint is None:
        return task.pretrained_model()
    run = RunFolder(checkpoint)
    if checkpoint.is_dir() and run.holds_run():  # its fine-tuned model, else (in progress) its latest checkpoint
        path, final = run.model_checkpoint()
        model = MaskedDiffusion.load(path, trust=trust)
        if not final:
            typer.echo(f"note: the run {checkpoint} is in progress or was interrupted: using its latest checkpoint "
                       f"(iteration {model.metadata.get('iteration', '?')}), not a final model", err=True)
    else:
        model = MaskedDiffusion.load(checkpoint, trust=trust)
    task.check_model(model, f"--checkpoint {checkpoint}")
    return model


@app.command()
def sample(
    task: str = typer.Argument(..., help="task name, e.g. dhs-hepg2"),
    n: int = typer.Option(100, "--n", help="number of samples"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(..., "--out", help="output file (FASTA for DNA tasks)"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="model folder or run folder (default: the task's pretrained model)"),
    steps: int = typer.Option(128, "--steps", help="denoising steps"),
    batch_size: int = typer.Option(256, "--batch-size", help="samples drawn at once (memory bound)"),
    task_settings: list[str] = TASK_SET_OPT,
    force: bool = typer.Option(False, "--force", help="overwrite --out if it exists"),
    trust_checkpoint: bool = TRUST_OPT,
):
    """Draw samples from a task's pretrained model, a checkpoint or a fine-tuning run."""
    with user_errors():
        for name, value in (("--n", n), ("--steps", steps), ("--batch-size", batch_size)):
            if value < 1:
                fail(f"{name}: must be >= 1, got {value}")
        check_output_file(out, "--out", force)
        t = Task.get(task, settings=cfg.parse_overrides(task_settings))
        model = _resolve_model(t, checkpoint, trust_checkpoint).eval()
        tokens = model.sample(n, steps, torch.Generator().manual_seed(seed), batch_size=batch_size)
        t.write_samples(out, model.alphabet.decode(tokens.cpu()))
    typer.echo(f"wrote {n} samples to {out}")


@app.command()
def evaluate(
    task: str = typer.Option(..., "--task", help="task name"),
    samples: Path = typer.Option(..., "--samples", help="sample file to evaluate"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the metrics as JSON here"),
    likelihood_samples: int = typer.Option(16, "--likelihood-samples", help="Monte Carlo steps of the pretrained model's ELBO per sequence, at most the chain's steps (0: every step)"),
    task_settings: list[str] = TASK_SET_OPT,
    per_sequence: Optional[Path] = typer.Option(None, "--per-sequence", help="also write one row per sequence here "
                                                "(TSV: sequence, training reward and its terms, evaluation reward, "
                                                "log-likelihood; molecules: SMILES, QED, SA)"),
):
    """Evaluate samples with the task's held-out evaluation oracle and naturalness metrics."""
    with user_errors():
        if likelihood_samples < 0:
            fail(f"--likelihood-samples: must be >= 0 (0: every step of the chain), got {likelihood_samples}")
        for name, path in (("--json", json_out), ("--per-sequence", per_sequence)):
            if path is not None:
                check_output_file(path, name, overwrite=True)
        t = Task.get(task, settings=cfg.parse_overrides(task_settings))
        seqs = t.read_samples(samples)
        if len(seqs) < 2:
            fail(f"--samples {samples}: holds {len(seqs)} sequence; the metrics need at least 2 (diversity "
                 f"compares pairs)")
        result = t.evaluate(seqs, likelihood_samples=likelihood_samples or None)
        if per_sequence:
            write_table(per_sequence, t.per_sequence(seqs, likelihood_samples=likelihood_samples or None))
    table = Table(title=f"{task}: {samples}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    Console().print(table)
    if json_out:
        write_json(json_out, result)


def _preset_help() -> str:
    """The --preset help: every task's presets (tasks/presets/<task>/*.yaml)."""
    names = "; ".join(f"{name}: {' | '.join(cls.preset_names())}" for name, cls in sorted(Task.registry.items())
                      if cls.preset_names() and cls._preset_dir().name == name)
    return f"named settings of the task ({names}; antibody-cdrh3-NAME: as antibody-cdrh3)"


@app.command()
def finetune(
    task: Optional[str] = typer.Argument(None, help="task name, e.g. dhs-hepg2 (with --model / --reward: the base "
                                                    "task, optional; `custom` to resume such a run)"),
    out: Optional[Path] = typer.Option(None, "--out", help="new run folder"),
    preset: Optional[str] = typer.Option(None, "--preset", help=_preset_help()),
    config_file: Optional[Path] = CONFIG_OPT,
    overrides: list[str] = SET_OPT,
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue the interrupted run in this folder"),
    trust_checkpoint: bool = TRUST_OPT,
    model: Optional[Path] = typer.Option(None, "--model", help="fine-tune this model folder (the task `custom`, "
                                                              "docs/rewards.md)"),
    reward: Optional[str] = typer.Option(None, "--reward", help=f"train against this reward: {FORMS}"),
    eval_reward: Optional[str] = typer.Option(None, "--eval-reward", help="evaluate with this reward (same forms)"),
):
    """Fine-tune the task's pretrained model against its training reward (default method: VIDD), or any model
    against any reward (--model, --reward: the task `custom`, over TASK as its base task if given)."""
    custom = {k: v for k, v in {"model": model and str(model.resolve()), "reward": reward and absolute_spec(reward),
                                "eval_reward": eval_reward and absolute_spec(eval_reward)}.items() if v}
    with user_errors():
        if resume:
            if out or preset or config_file or custom:
                fail("--resume takes the run folder; its config.yaml is used (only --set may change it)")
            if task is None:
                fail(f"give the run's task: vidd finetune TASK --resume {resume} (`{CUSTOM}` for a run made with "
                     f"--model / --reward)")
            config = resume_config(RunFolder(resume), cfg.parse_overrides(overrides))
            out = resume
        elif out is None:
            fail("give --out RUN (a new run folder) or --resume RUN")
        elif custom:
            base = {"base": task} if task and task != CUSTOM else {}
            presets = Task.get(task) if base else None
            config = finetune_config(presets, preset, *layers(config_file, overrides), {"task": {**custom, **base}})
            task = CUSTOM
        elif task is None:
            fail("give a task (vidd finetune TASK), or a model and a reward (--model PATH --reward SPEC)")
        else:
            config = finetune_config(Task.get(task), preset, *layers(config_file, overrides))
        run = build_run(run_task(task, config), config, out, resume=resume is not None, log=typer.echo,
                        trust_checkpoint=trust_checkpoint)
        run.execute()
    if run.folder and run.main:
        typer.echo(f"run folder: {out}  (final metrics in {run.folder.final_eval_file}, curves in "
                   f"{run.folder.report_file})")


@app.command()
def report(
    run: Path = typer.Argument(..., help="a fine-tuning run folder (finished, running or interrupted)"),
    task: Optional[str] = typer.Option(None, "--task", help="the run's task: also remake its tables and figures of "
                                                            "the final samples"),
    task_settings: list[str] = typer.Option([], "--task-set", help="with --task: a task setting key=value for this "
                                                                   "report (e.g. molecules: --task-set "
                                                                   "report_prior_samples=256)"),
):
    """(Re)write a run's learning curves (curves.png) and report.html (with --task, its tables and figures too)."""
    with user_errors():
        folder = RunFolder(run)
        if task_settings and task is None:
            fail("--task-set: give the run's task too (--task NAME)")
        if task is not None:
            config = resume_config(folder, {"task": cfg.parse_overrides(task_settings)})
            write_task_report(run_task(task, config), folder, config.steps)
        path = write_report(folder)
    typer.echo(f"wrote {path} and {folder.curves_file}")


@app.command("model-report")
def model_report(
    task: str = typer.Option(..., "--task", help="task name"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="model folder or run folder (default: the task's pretrained model)"),
    samples: int = typer.Option(1000, "--samples", help="samples drawn for the sample statistics"),
    steps: int = typer.Option(0, "--steps", help="denoising steps of those samples (0: the task's default, 128 for "
                                                 "DNA, 32 for molecules)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the report as JSON here"),
    device: str = typer.Option("cpu", "--device", help="torch device that samples and scores (e.g. cuda)"),
    trust_checkpoint: bool = TRUST_OPT,
):
    """Held-out quality of a model and its provenance: test ELBO against a Markov baseline, sample statistics,
    and what the model is (for a fine-tuned model: its base model's hash, task, method, config, iteration,
    reward calls, vidd version)."""
    with user_errors():
        if samples < 2:
            fail(f"--samples: must be >= 2 (diversity compares pairs), got {samples}")
        if steps < 0:
            fail(f"--steps: must be >= 1 (0: the task's default), got {steps}")
        check_available(device, "--device")
        if json_out is not None:
            check_output_file(json_out, "--json", overwrite=True)
        t = Task.get(task)
        model = _resolve_model(t, checkpoint, trust_checkpoint).eval().to(device)
        options = {"steps": steps} if steps else {}  # a task's model_report without `steps` keeps working
        report = {**t.model_report(model, n_samples=samples, **options), "provenance": model.metadata}
    typer.echo(json.dumps(report, indent=2))
    if json_out:
        write_json(json_out, report)


@app.command("convert-checkpoint")
def convert_checkpoint(
    old: Path = typer.Argument(..., help="a vidd 0.1 pickled `.pt` model, oracle or run checkpoint"),
    new: Path = typer.Argument(..., help="the model folder to write (config.json + model.safetensors)"),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="required: OLD carries no content "
                                          "hash, so nothing shows it is intact or what wrote it; it is read by a "
                                          "restricted unpickler (tensors, containers and numpy values only)"),
):
    """Convert a vidd 0.1 pickled `.pt` model or oracle, once, into a model folder that loads safely."""
    with user_errors():
        if not trust_checkpoint:
            fail(f"{old} carries no content hash: nothing shows it is intact or that vidd wrote it; pass "
                 f"--trust-checkpoint if you trust where it came from (it is read by a restricted unpickler that "
                 f"runs no code)")
        if new.exists():
            fail(f"{new}: exists; give a new folder")
        payload = load_trusted(old)
        if not isinstance(payload, dict):
            fail(f"{old}: not a vidd model or oracle (holds a {type(payload).__name__})")
        if payload.get("format") == oracle.LEGACY_FORMAT:
            oracle.save_classifier(oracle.classifier_from_state(payload, str(old)), new)
        else:
            model = MaskedDiffusion.from_state(payload.get("model", payload), where=str(old))
            model.save_pretrained(new)
    typer.echo(f"wrote {new}")


@app.command()
def bench(
    task: str = typer.Argument(..., help="task name, e.g. dhs-hepg2"),
    methods: str = typer.Option("vidd,ddpo,ddpp,standard,drakes,best-of-n,svdd,pretrained", "--methods",
                                help="comma-separated labels: methods (fine-tuning methods, best-of-n, svdd, "
                                     "pretrained) or variants of --variants"),
    budget: int = typer.Option(..., "--budget", help="training-reward calls every method may spend (never more)"),
    seeds: int = typer.Option(1, "--seeds", help="seeds per method (a variant may set its own `seeds`)"),
    first_seed: int = typer.Option(0, "--first-seed", help="seeds are first-seed, first-seed + 1, ..."),
    samples: int = typer.Option(256, "--samples", help="samples per evaluation and per final model"),
    preset: str = typer.Option("quick", "--preset", help="task preset the fine-tuning methods start from"),
    eval_at_calls: str = typer.Option("", "--eval-at-calls", help="comma-separated reward-call thresholds at which "
                                                                  "fine-tuning runs are evaluated, e.g. 768,1536,3072"),
    variants: list[Path] = typer.Option([], "--variants", help="YAML: label -> config layer (and optional "
                                                                "`extends: LABEL`, `seeds: N`); repeat to merge "
                                                                "files label by label, e.g. a sweep's choice.yaml"),
    lrs: str = typer.Option("", "--lrs", help="comma-separated learning rates: run the learning-rate sweep instead "
                                              "(chosen by the training reward, written to choice.yaml)"),
    pick: list[str] = typer.Option([], "--pick", help="with --lrs: NAME=A,B,C makes NAME the candidate label with "
                                                      "the largest training-reward area at its chosen rate"),
    compare: str = typer.Option("", "--compare", help="comma-separated A:B pairs of labels: paired differences A - B "
                                                      "of the areas under the held-out reward curves"),
    overrides: list[str] = SET_OPT,
    out: Path = typer.Option(..., "--out", help="results folder (rerunning continues it; several processes may "
                                                "work on it at once)"),
    rerun_failed: bool = typer.Option(False, "--rerun-failed", help="run the failed cells again (by default a "
                                                                    "failed cell counts as finished)"),
):
    """Run methods under one reward-call budget; write results.json/csv, curves.csv, table.md, stats.json and
    plots (or, with --lrs, the learning-rate sweep)."""
    with user_errors():
        if samples < 2:
            fail(f"--samples: must be >= 2 (diversity compares pairs), got {samples}")
        plan = BenchPlan(
            task, _names(methods), budget, seeds, samples, preset, cfg.parse_overrides(overrides),
            eval_at_calls=_numbers(eval_at_calls, int, "--eval-at-calls"), first_seed=first_seed,
            variants=load_variants(*variants), compare=[pair.split(":") for pair in _names(compare)])
        plan.validate()
        Task.get(task).preset(preset)  # an unknown preset fails before any run starts
        if lrs:
            picks = dict(_pick(p) for p in pick)
            done = lr_sweep(plan, _numbers(lrs, float, "--lrs"), out, picks, log=typer.echo,
                            rerun_failed=rerun_failed) is not None
            summary = out / "lr_sweep.md"
        else:
            done = run_bench(plan, out, log=typer.echo, rerun_failed=rerun_failed) is not None
            summary = out / "table.md"
    if done:
        typer.echo(summary.read_text())


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _pick(text: str) -> tuple[str, list[str]]:
    name, _, candidates = text.partition("=")
    if not name.strip() or not _names(candidates):
        raise cfg.ConfigError(f"--pick: expected NAME=A,B,..., got {text!r}")
    return name.strip(), _names(candidates)


def _numbers(text: str, kind: type, option: str) -> list:
    try:
        return [kind(x) for x in _names(text)]
    except ValueError:
        raise cfg.ConfigError(f"{option}: expected comma-separated numbers, got {text!r}") from None


#: the command a config class belongs to, where its name is not one
CONFIG_TITLES = {"assay-oracle": "train-oracle --data"}


def _config_classes() -> dict:
    return {"finetune": FinetuneConfig, "pretrain": PretrainConfig, "train-oracle": OracleConfig,
            "assay-oracle": AssayOracleConfig}


def config_markdown(command: str, method: Optional[str] = None) -> str:
    """Markdown tables of a command's config fields; for `finetune`, with the `method` section of `method`
    (None: the default method's table, then the `method.*` table of every other registered method)."""
    cls = _config_classes()[command]
    if command != "finetune":
        return _fields_table(f"`vidd {CONFIG_TITLES.get(command, command)}`", cfg.describe(cls))

    chosen = Method.lookup(method or cls().method.name)
    text = _fields_table(f"`vidd finetune` (method `{chosen.name}`)", cfg.describe(cls, defaults=cls(method=chosen.Config())))
    if method is None:
        text += "".join("\n" + method_markdown(name) for name in sorted(Method.registry) if name != chosen.name)
    return text


def method_markdown(name: str) -> str:
    """The table of one method's `method.*` fields."""
    return _fields_table(f"`method.*` of method `{name}`", cfg.describe(Method.lookup(name).Config, "method."))


def _fields_table(title: str, rows) -> str:
    lines = [f"### {title}", "", "| field | default | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | `{default}` | {text} |" for name, default, text in rows]
    return "\n".join(lines) + "\n"


@app.command("config")
def show_config(
    command: str = typer.Argument("finetune", help="finetune | pretrain | train-oracle | assay-oracle (train-oracle "
                                                   "--data)"),
    method: Optional[str] = typer.Option(None, "--method", help="finetune: the fields of this method's section "
                                                                "(default: every method)"),
):
    """Print every config field of a command (name, default, meaning) as Markdown."""
    if command not in _config_classes():
        fail(f"unknown command {command!r}; one of {sorted(_config_classes())}")
    if method is not None and command != "finetune":
        fail("--method applies to `vidd config finetune` only")
    with user_errors():
        typer.echo(config_markdown(command, method))


def main():
    app()
