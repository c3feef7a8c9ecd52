"""The run's three models (vidd.training.copies): LoRA adapters on a shared frozen base (what trains, the lazy
update, adapter-only checkpoints, bit-identical resume, the merged final model), reduced precision, gradient
checkpointing, compilation and the settings' validation, on a tiny ESM-2 adapter model and the toy CNN."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from support.tiny_models import save_tiny_esm2
from support.toy import toy_model
from vidd.core import config as cfg
from vidd.core.runfolder import RunFolder
from vidd.diffusion.loaders import load_esm2
from vidd.diffusion.masked import CheckpointError, MaskedDiffusion
from vidd.run import build_run, finetune
from vidd.tasks.custom import CustomTask
from vidd.training import FinetuneConfig, Trainer
from vidd.training.callbacks import Callback
from vidd.training.copies import LORA_PREFIX, ModelConfig, ModelCopies, copy_student_to_rollout

pytest.importorskip("transformers", reason="masked-LM adapters need the [protein] extra")
pytest.importorskip("peft", reason="LoRA needs the [lora] extra")
QUIET = {"log": lambda *a: None}
LORA = {"finetune": "lora", "lora_rank": 2}


def a_reward(seqs):
    return [s.count("A") + 0.5 * s.count("W") for s in seqs]


@pytest.fixture(scope="module")
def esm_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("esm2")
    save_tiny_esm2(folder)
    return folder


@pytest.fixture
def esm(esm_folder):
    """A fresh tiny ESM-2 in-filling model of 6 designable positions, frozen as the trainer holds it."""
    return load_esm2(esm_folder, length=6).requires_grad_(False)


def run_config(model: dict | None = None, **over) -> FinetuneConfig:
    base = {"iterations": 4, "steps": 3, "batch_size": 4, "accumulation": 1, "lr": 3e-2, "eval_every": 2,
            "eval_samples": 4, "final_samples": 4, "likelihood_samples": 1, "checkpoint_every": 2, "threads": 1,
            "method": {"name": "vidd", "update_interval": 2, "timesteps": 2}, "model": model or {}}
    return cfg.build(FinetuneConfig, cfg.merge(base, over))


def outputs(model: MaskedDiffusion, seed: int = 0) -> torch.Tensor:
    x = model.initial_state(5)
    x[:, ::2] = torch.randint(20, (5, 3), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.denoise(x, torch.tensor(0.5))


def train_step(copies: ModelCopies, lr: float = 0.1) -> None:
    """One SGD step of the student (ESM-2's contact head is unused: its adapter gets no gradient)."""
    x = copies.student.initial_state(4)
    loss = -copies.student.denoise(x, torch.tensor(1.0))[..., 0].sum()
    copies.backward(loss)
    with torch.no_grad():
        for p in copies.trainable_parameters():
            if p.grad is not None:
                p -= lr * p.grad
                p.grad = None


# ------------------------------------------------------------------ LoRA
def test_lora_trains_adapters_only_on_a_base_shared_by_the_three_models(esm):
    copies = ModelCopies(esm, cfg.build(ModelConfig, LORA))
    x = copies.student.initial_state(3)
    copies.student.denoise(x, torch.tensor(1.0)).logsumexp(-1).sum().backward()
    with_grad = {n for n, p in copies.student.named_parameters() if p.grad is not None}
    trainable = {n for n, p in copies.student.named_parameters() if p.requires_grad}
    assert with_grad and with_grad <= trainable and all(LORA_PREFIX in n for n in trainable)
    assert len(copies.trainable_parameters()) == len(trainable)
    base = {id(p) for p in esm.parameters()}
    for model in (copies.student, copies.rollout):
        frozen = [p for n, p in model.named_parameters() if LORA_PREFIX not in n]
        assert len(frozen) == len(base) and {id(p) for p in frozen} == base  # shared, not copied
    assert not any(LORA_PREFIX in n for n, _ in esm.named_parameters())
    assert torch.allclose(outputs(copies.student), outputs(esm))  # adapters start at zero (B = 0)


def test_lazy_update_copies_the_adapters_and_the_pretrained_model_never_changes(esm):
    reference = outputs(copy.deepcopy(esm))
    copies = ModelCopies(esm, cfg.build(ModelConfig, LORA))
    train_step(copies)
    student, rollout = outputs(copies.student), outputs(copies.rollout)
    assert not torch.allclose(student, rollout, atol=1e-4)  # before the update the roll-out lags
    assert torch.equal(rollout, reference)
    copy_student_to_rollout(copies.student, copies.rollout)
    assert torch.equal(outputs(copies.rollout), student)
    assert torch.equal(outputs(copies.pretrained), reference)


def test_lora_run_checkpoints_adapters_only_and_resumes_bit_identically(esm_folder, tmp_path):
    def run(out, resume=False, callbacks=()):
        task = CustomTask(load_esm2(esm_folder, length=6), a_reward)
        return build_run(task, run_config(LORA), out, resume, callbacks=callbacks, **QUIET).execute()

    full = run(tmp_path / "full")
    state = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=False)
    assert "state_dict" not in state["model"] and "rollout" not in state
    assert state["model"]["metadata"]["iteration"] == 4  # the provenance, as a full checkpoint's
    adapters = state["adapters"]
    assert adapters["student"].keys() == adapters["rollout"].keys()
    assert adapters["student"] and all(LORA_PREFIX in k for k in adapters["student"])
    held = sum(v.numel() for v in adapters["student"].values())
    assert held < 0.5 * sum(p.numel() for p in load_esm2(esm_folder, length=6).parameters())
    with pytest.raises(CheckpointError, match="holds adapters only; the run's model is checkpoints/student/"):
        MaskedDiffusion.load(tmp_path / "full" / "checkpoints" / "last.pt")

    class Killed(KeyboardInterrupt):
        pass

    class KillAfterIterationThree(Callback):
        def on_iteration_end(self, trainer, row):
            if row["iteration"] == 3:
                raise Killed()

    with pytest.raises(Killed):
        run(tmp_path / "cut", callbacks=[KillAfterIterationThree()])
    resumed = run(tmp_path / "cut", resume=True)
    assert [r["loss"] for r in full.metrics] == [r["loss"] for r in RunFolder(tmp_path / "cut").read_metrics()]
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_lora_run_resumes_through_the_run_checks_and_refuses_another_base(esm_folder, tmp_path):
    """`vidd.run` checks a checkpoint before a resumed run starts; a LoRA checkpoint holds no model weights (its
    adapters go on the task's model), so the base model is recognised by the hash in its provenance."""
    out = tmp_path / "run"
    finetune(load_esm2(esm_folder, length=6), a_reward, run_config(LORA, iterations=2), out=out, **QUIET)
    other = load_esm2(esm_folder, length=6)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    with pytest.raises(cfg.ConfigError, match="started from another model"):
        finetune(other, a_reward, run_config(LORA, iterations=4), out=out, resume=True, **QUIET)
    resumed = finetune(load_esm2(esm_folder, length=6), a_reward, run_config(LORA, iterations=4), out=out,
                       resume=True, **QUIET)
    assert [r["iteration"] for r in resumed.metrics] == [1, 2, 3, 4]
    assert MaskedDiffusion.load(out / "checkpoints" / "student").metadata["iteration"] == 4


def test_the_final_model_is_the_base_with_the_adapters_merged(esm, tmp_path):
    reference = outputs(copy.deepcopy(esm))
    copies = ModelCopies(esm, cfg.build(ModelConfig, LORA))
    train_step(copies)
    merged = copies.final_model()
    assert torch.equal(outputs(esm), reference)  # merging leaves the base alone
    assert not any(LORA_PREFIX in k for k in merged.state_dict())
    merging_error = (outputs(merged) - outputs(copies.student)).nan_to_num().abs().max()
    training_change = (outputs(merged) - outputs(esm)).nan_to_num().abs().max()
    assert merging_error < 1e-3 and training_change > 100 * merging_error, (merging_error, training_change)
    merged.save_pretrained(tmp_path / "student")
    assert torch.equal(outputs(MaskedDiffusion.load(tmp_path / "student")), outputs(merged))


def test_resuming_with_another_finetune_setting_is_a_clear_error(esm):
    lora = ModelCopies(esm, cfg.build(ModelConfig, LORA))
    full = ModelCopies(toy_model(), ModelConfig())
    with pytest.raises(CheckpointError, match="holds full fine-tuning weights.*model.finetune=lora"):
        lora.load_state_dict(full.state_dict(metadata={}))
    with pytest.raises(CheckpointError, match="holds LoRA adapters.*model.finetune=full"):
        full.load_state_dict(lora.state_dict(metadata={}))


@pytest.mark.parametrize("bad, message", [
    ({"finetune": "lora"}, r"model.finetune: lora needs a masked-LM adapter model.*DilatedCNN|Transformer"),
    ({"lora_rank": 0}, r"lora_rank: must be >= 1, got 0"),
    ({"precision": "fp8"}, r"'fp8' is not one of the allowed values \['fp32', 'bf16', 'fp16'\]"),
])
def test_bad_model_settings_fail_before_the_run_starts(bad, message, tmp_path):
    with pytest.raises(cfg.ConfigError, match=message):
        build_run(CustomTask(toy_model(), a_reward), run_config(bad), tmp_path / "run", log=lambda *a: None)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("targets, message", [
    (["qkv"], r"\['qkv'\] does not fit the EsmForMaskedLM LM: .*not found.* \(its layer types: .*Linear"),
    (["LayerNorm"], r"\['LayerNorm'\] does not fit the EsmForMaskedLM LM: .*LayerNorm.*not supported"),
])
def test_lora_target_modules_that_fit_no_layer_fail_before_the_run_starts(targets, message, esm, tmp_path):
    model = run_config({**LORA, "lora_target_modules": targets})
    with pytest.raises(cfg.ConfigError, match="model.lora_target_modules: " + message):
        build_run(CustomTask(esm, a_reward), model, tmp_path / "run", log=lambda *a: None)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("model", [{**LORA, "frozen_precision": "bf16", "compile": True},
                                   {"precision": "bf16", "frozen_precision": "fp16"}])
def test_the_callers_model_is_left_as_it_was(model, esm):
    before = {n: p.clone() for n, p in esm.state_dict().items()}
    ModelCopies(esm, cfg.build(ModelConfig, model))
    after = esm.state_dict()
    assert all(torch.equal(before[n], after[n]) and before[n].dtype == after[n].dtype for n in before)
    assert esm.autocast_dtype is None and esm.backbone._compiled_call_impl is None


def test_a_lora_student_on_an_fp16_base_scales_its_loss(esm):
    """The student computes in fp16 on an fp16 base even with precision fp32: its gradients need loss scaling."""
    copies = ModelCopies(esm, cfg.build(ModelConfig, {**LORA, "frozen_precision": "fp16"}))
    assert copies.student.autocast_dtype is torch.float16 and copies.scaler is not None
    assert ModelCopies(toy_model(), cfg.build(ModelConfig, {"frozen_precision": "fp16"})).scaler is None


# ------------------------------------------------------------------ precision, checkpointing, compile
@pytest.mark.parametrize("model", [
    {**LORA, "precision": "bf16", "frozen_precision": "bf16"},
    {"precision": "bf16", "frozen_precision": "bf16"},
    {"precision": "fp16"},
])
def test_reduced_precision_runs_an_iteration(model, esm_folder):
    """bf16 autocast with frozen bf16 weights (LoRA: the shared base; full: the pretrained and roll-out copies),
    and fp16 with loss scaling (whose first steps may overflow and be skipped: a non-finite gradient norm); the
    toy transformer takes fp32 time features into its reduced-precision layers."""
    for pretrained in (load_esm2(esm_folder, length=6), toy_model()):
        if (model.get("finetune") == "lora") != (pretrained.backbone.kind == "masked-lm"):
            continue  # LoRA on the ESM-2 model, full fine-tuning on the toy (fp16 CPU matmuls are slow)
        trainer = Trainer(run_config(model, iterations=3, eval_every=0, final_samples=2), pretrained, a_reward,
                          **QUIET)
        frozen = torch.float32 if model.get("frozen_precision", "fp32") == "fp32" else torch.bfloat16
        assert {p.dtype for p in trainer.ctx.pretrained.parameters()} == {frozen}
        assert {p.dtype for p in trainer.copies.trainable_parameters()} == {torch.float32}
        result = trainer.run()
        assert any(math.isfinite(row["grad_norm"]) and row["grad_norm"] > 0 for row in result.metrics)
        assert all(torch.isfinite(p).all() for p in result.model.parameters())


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_gradient_checkpointing_gives_the_same_gradients(finetune, esm_folder):
    def gradients(recompute: bool):
        pretrained = toy_model() if finetune == "full" else load_esm2(esm_folder, length=6).requires_grad_(False)
        copies = ModelCopies(pretrained, cfg.build(ModelConfig, {"finetune": finetune, "lora_rank": 2,
                                                                 "gradient_checkpointing": recompute}))
        if finetune == "lora":
            train_step(copies)  # B != 0, so that every adapter gets a gradient
        x = copies.student.initial_state(3)
        x[:, 1] = 0
        saved = []  # the bytes autograd keeps for the backward pass (a checkpointed block keeps its inputs only)
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t,
                                                      lambda t: t):
            out = copies.student.denoise(x, torch.tensor(0.7)).logsumexp(-1).sum()
        out.backward()
        names = [n for n, p in copies.student.named_parameters() if p.requires_grad]
        return names, [p.grad for p in copies.trainable_parameters()], sum(saved)

    names, plain, kept = gradients(False)
    names_again, recomputed, kept_recomputing = gradients(True)
    assert names == names_again and kept_recomputing < 0.8 * kept
    assert sum(g is not None for g in plain) >= len(plain) - 2  # all but the contact head's adapter
    for a, b in zip(plain, recomputed):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-6)


def test_compile_wraps_every_network(esm):
    copies = ModelCopies(esm, cfg.build(ModelConfig, {**LORA, "compile": True}))
    for model in (copies.student, copies.rollout, copies.pretrained):
        assert model.backbone._compiled_call_impl is not None
    assert copies.final_model().backbone._compiled_call_impl is None  # a plain model, not the base's network
    assert ModelCopies(toy_model(), ModelConfig()).student.backbone._compiled_call_impl is None


@pytest.mark.slow
def test_a_compiled_network_gives_the_eager_outputs(esm):
    """Compilation happens on first use (on a CPU with a C++ compiler: tens of seconds for the tiny ESM-2 with an
    empty TorchInductor cache)."""
    eager = outputs(copy.deepcopy(esm))
    copies = ModelCopies(esm, cfg.build(ModelConfig, {**LORA, "compile": True}))
    assert torch.allclose(outputs(copies.student), eager, atol=1e-5)
