"""`report_to`: the real TensorBoard, MLflow and W&B libraries log every metric row, the config and the final
evaluation of a run; each read back from what the library wrote (an event file, a local file store, an offline
run). A tracker whose library is not installed is skipped."""

import importlib.util
import json
import sys

import pytest

from support.toy import toy_model
from support.wandb_records import offline_run
from vidd import build_run
from vidd.core import config as cfg
from vidd.core.config import ConfigError
from vidd.core.extras import MissingExtra
from vidd.tasks.custom import CustomTask
from vidd.training import FinetuneConfig

INSTALLED = [name for name, module in (("tensorboard", "tensorboard"), ("mlflow", "mlflow"), ("wandb", "wandb"))
             if importlib.util.find_spec(module)]


def skip_unless(name):
    return pytest.mark.skipif(name not in INSTALLED, reason=f"{name} is not installed (pip install 'vidd[{name}]')")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One 3-iteration toy run reported to every installed tracker: (run folder, metrics rows, final eval,
    MLflow tracking URI)."""
    root = tmp_path_factory.mktemp("tracked")
    uri = (root / "mlruns").as_uri()
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": "vidd-test",
           "MLFLOW_ALLOW_FILE_STORE": "true",  # MLflow 3 needs the opt-in for a file store
           "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_PROJECT": "vidd-test"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        config = cfg.build(FinetuneConfig, {"iterations": 3, "steps": 4, "batch_size": 4, "accumulation": 1,
                                            "eval_every": 2, "eval_samples": 4, "final_samples": 4,
                                            "likelihood_samples": 2, "lr": 0.003, "report_to": INSTALLED,
                                            "method": {"name": "vidd", "timesteps": 2}})
        task = CustomTask(toy_model(), lambda seqs: [s.count("G") for s in seqs])
        result = build_run(task, config, root / "run", log=lambda *a: None).execute()
    final = json.loads((root / "run" / "final_eval.json").read_text())
    return root / "run", result.metrics, final, uri


def numbers(row):
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "iteration"}


@skip_unless("tensorboard")
def test_tensorboard_event_file_holds_every_metric_the_config_and_the_final_evaluation(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run, rows, final, _ = tracked
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    for key in set().union(*map(numbers, rows)):
        logged = {e.step: e.value for e in events.Scalars(key)}
        assert logged == pytest.approx({r["iteration"]: r[key] for r in rows if key in r}, rel=1e-6), key
    assert [e.step for e in events.Scalars("eval_diversity")] == [2, 3]
    assert events.Scalars("final/diversity")[0].value == pytest.approx(final["diversity"], rel=1e-6)
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["lr"].number_value == pytest.approx(0.003)
    assert hparams["method.name"].string_value == "vidd" and hparams["task_name"].string_value == "custom"


@skip_unless("mlflow")
def test_mlflow_file_store_holds_every_metric_the_config_and_the_final_evaluation(tracked, monkeypatch):
    from mlflow import MlflowClient

    run, rows, final, uri = tracked
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(uri)
    (logged,) = client.search_runs([client.get_experiment_by_name("vidd-test").experiment_id])
    assert logged.info.run_name == "run" and logged.info.status == "FINISHED"
    assert logged.data.params["lr"] == "0.003" and logged.data.params["method.timesteps"] == "2"
    assert logged.data.tags["vidd.run_folder"] == str(run.resolve())
    history = {m.step: m.value for m in client.get_metric_history(logged.info.run_id, "loss")}
    assert history == pytest.approx({r["iteration"]: r["loss"] for r in rows}, rel=1e-6)
    assert set(logged.data.metrics) >= set().union(*map(numbers, rows))
    assert logged.data.metrics["final/diversity"] == pytest.approx(final["diversity"])


@skip_unless("wandb")
def test_wandb_offline_run_holds_every_metric_the_config_and_the_final_evaluation(tracked):
    run, rows, final, _ = tracked
    logged = offline_run(run)
    assert logged["config"]["lr"] == 0.003 and logged["config"]["method"]["name"] == "vidd"
    steps = {h["_step"]: h for h in logged["history"]}
    assert sorted(steps) == [r["iteration"] for r in rows]
    for r in rows:
        assert {k: steps[r["iteration"]][k] for k in numbers(r)} == pytest.approx(numbers(r), rel=1e-6)
    assert logged["summary"]["final/diversity"] == pytest.approx(final["diversity"])


def test_unknown_tracker_and_missing_library_fail_when_the_config_is_built(monkeypatch):
    with pytest.raises(ConfigError, match=r"report_to: unknown tracker 'neptune'; one of \['mlflow', "):
        cfg.build(FinetuneConfig, {"report_to": ["neptune"]})
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` fail
    with pytest.raises(MissingExtra, match=r"report_to: wandb needs the Python package 'wandb': pip install "
                                           r"'vidd\[wandb\]'"):
        cfg.build(FinetuneConfig, {"report_to": ["wandb"]})
