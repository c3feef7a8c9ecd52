"""Masked-LM adapters: the order-agnostic in-filling chain (exact K reveals, fixed positions never change,
transition probabilities that sum to one), checkpoints, fine-tuning on an adapter model (VIDD, DDPO, SVDD),
and the loaders of BERT / ESM-2 / EvoDiff OA-DM checkpoints, on tiny randomly initialised models of the
same classes written in the same formats."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support.tiny_models import ESM_VOCAB, save_tiny_esm2

from vidd.core.alphabets import DNA, PROTEIN
from vidd.core.extras import MissingExtra, require
from vidd.core.seqio import read_fasta
from vidd.diffusion.backbones import DilatedCNN
from vidd.diffusion.lm_backbone import MaskedLMBackbone, vocabulary_ids
from vidd.diffusion.loaders import (
    ANTIBERTY_VOCAB,
    adapter_model,
    evodiff_config_path,
    evodiff_oadm_arguments,
    from_hf_masked_lm,
    load_esm2,
    load_evodiff_oadm,
)
from vidd.diffusion.masked import MaskedDiffusion
from vidd.diffusion.order_agnostic import (
    OrderAgnosticDiffusion,
    reveal_schedule,
    template_tokens,
)

VH = "EVQLVESGGGLVQPGGSLRLSCAAS"  # 25 residues; positions 5..14 designable below
DESIGN = slice(5, 15)


def oa_cnn(length=4, designable=(1, 2), seed=0) -> OrderAgnosticDiffusion:
    """The OA chain on a tiny CNN over DNA: cheap enough to enumerate transitions."""
    torch.manual_seed(seed)
    template = torch.full((length,), DNA.mask_index)
    fixed = [i for i in range(length) if i not in designable]
    template[fixed] = torch.arange(len(fixed)) % DNA.size
    return OrderAgnosticDiffusion(DilatedCNN(DilatedCNN.Config(DNA.size, hidden=8, stacks=1, dilations=[1])),
                                  DNA, length, template=template).eval()


def tiny_bert(seed=0):
    transformers = pytest.importorskip("transformers", reason="BERT adapters need the [protein] extra")
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=len(ANTIBERTY_VOCAB), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    return transformers.BertForMaskedLM(config).eval()


def bert_model(template=None, length=None, seed=0) -> OrderAgnosticDiffusion:
    lm = tiny_bert(seed)
    vocab = {t: i for i, t in enumerate(ANTIBERTY_VOCAB)}
    backbone = MaskedLMBackbone(MaskedLMBackbone.Config(
        "bert", lm.config.to_dict(), vocabulary_ids(vocab, PROTEIN, "[MASK]"), [vocab["[CLS]"]], [vocab["[SEP]"]]), lm)
    return adapter_model(backbone, PROTEIN, length, template)


def vh_template():
    return template_tokens(PROTEIN, VH, DESIGN)


def assert_infilling(model, states: torch.Tensor, template: torch.Tensor):
    fixed = template != model.mask_index
    assert (states[..., fixed] == template[fixed]).all(), "a fixed position changed"


# ------------------------------------------------------------------ the chain
def test_each_step_reveals_exactly_k_positions_and_fixed_positions_never_change():
    model = bert_model(vh_template())
    traj = model.sample(6, 4, torch.Generator().manual_seed(0), record=True)
    masked = (traj.states == model.mask_index).sum(-1)  # (T + 1, B)
    assert masked[0].tolist() == [10] * 6 and masked[-1].tolist() == [0] * 6
    assert reveal_schedule(10, 4) == [3, 3, 2, 2]
    for k, reveal in enumerate(reveal_schedule(10, 4)):
        assert (masked[k] - masked[k + 1]).tolist() == [reveal] * 6
    assert_infilling(model, traj.states, vh_template())
    assert not (traj.states[:, :, : DESIGN.start] == model.mask_index).any()  # fixed never masked
    seqs = PROTEIN.decode(traj.final)
    assert all(s[:5] == VH[:5] and s[15:] == VH[15:] for s in seqs)
    assert len({s[DESIGN] for s in seqs}) > 1


def test_one_position_per_step_when_steps_equal_designable_positions():
    model = bert_model(vh_template())
    traj = model.sample(3, 10, torch.Generator().manual_seed(1), record=True)
    masked = (traj.states == model.mask_index).sum(-1)
    assert (masked[:-1] - masked[1:] == 1).all()


def test_step_probabilities_sum_to_one_and_impossible_steps_are_minus_inf():
    model = oa_cnn(length=4, designable=(0, 1, 3))
    times, mask_probs = model.grid(2)
    x_t = model.initial_state(1)
    log_x0 = model.denoise(x_t, times[0].float())
    k = reveal_schedule(3, 2)[0]  # 2 of the 3 masked positions
    total, impossible = 0.0, []
    for letters in itertools.product(range(DNA.size + 1), repeat=3):
        x_s = x_t.clone()
        x_s[0, [0, 1, 3]] = torch.tensor(letters)
        lp = model.step_log_prob(x_t, x_s, log_x0, mask_probs[0], mask_probs[1])
        if sum(v != model.mask_index for v in letters) == k:
            total += float(lp.exp().detach())
        else:
            impossible.append(float(lp.detach()))
    assert total == pytest.approx(1.0, abs=1e-6)
    assert all(v == float("-inf") for v in impossible)
    changed = x_t.clone()
    changed[0, 2] = (changed[0, 2] + 1) % DNA.size  # a fixed position
    assert model.step_log_prob(x_t, changed, log_x0, mask_probs[0], mask_probs[1]).item() == float("-inf")


def test_step_frequencies_match_step_log_prob():
    """Empirical frequencies of one step from the all-masked template agree with exp(step_log_prob)."""
    model = oa_cnn(length=3, designable=(0, 2))
    times, mask_probs = model.grid(2)
    n = 20000
    x_t = model.initial_state(n)
    log_x0 = model.denoise(x_t[:1], times[0].float()).expand(n, -1, -1)
    x_s = model.step(x_t, log_x0, mask_probs[0], mask_probs[1], torch.Generator().manual_seed(0))
    states, counts = torch.unique(x_s, dim=0, return_counts=True)
    assert len(states) == 2 * DNA.size  # one of 2 positions x 4 letters
    lp = model.step_log_prob(x_t[: len(states)], states, log_x0[: len(states)], mask_probs[0], mask_probs[1])
    np.testing.assert_allclose(counts.numpy() / n, lp.exp().detach().numpy(), atol=0.012)


def test_noise_and_elbo_only_touch_designable_positions():
    model = bert_model(vh_template())
    x0 = PROTEIN.encode([VH] * 4)
    noised = model.noise(x0, torch.ones(4))
    assert (noised[:, DESIGN] == model.mask_index).all() and torch.equal(noised[:, :5], x0[:, :5])
    elbo = model.elbo(x0, steps=10, samples=None)
    assert elbo.shape == (4,) and torch.isfinite(elbo).all() and (elbo < 0).all()


def test_template_errors():
    with pytest.raises(ValueError, match="template"):
        oa = oa_cnn()
        OrderAgnosticDiffusion(oa.backbone, DNA, 4, template=torch.tensor([0, 1, 9, 0]))
    with pytest.raises(ValueError, match="give a template or a length"):
        adapter_model(bert_model(length=5).backbone, PROTEIN)
    with pytest.raises(Exception, match="at position 3"):
        template_tokens(PROTEIN, "ACZ", [0])


def test_checkpoint_round_trip_keeps_the_template_and_the_weights(tmp_path):
    model = bert_model(vh_template())
    path = tmp_path / "model"
    model.save_pretrained(path)
    assert json.loads((path / "config.json").read_text())["weights"]["aliases"]  # the LM's tied embeddings
    loaded = MaskedDiffusion.load(path)
    assert isinstance(loaded, OrderAgnosticDiffusion) and isinstance(loaded.backbone, MaskedLMBackbone)
    assert torch.equal(loaded.template, model.template)
    x = model.initial_state(2)
    a, b = model.denoise(x, torch.tensor(1.0)), loaded.eval().denoise(x, torch.tensor(1.0))
    assert torch.allclose(a[:, DESIGN], b[:, DESIGN], atol=1e-5)
    # a fresh interpreter that never imported the chain or the backbone module loads it too (as `vidd sample
    # --checkpoint` does), and so a masked-LM backbone under the plain masked chain
    plain = tmp_path / "plain"
    MaskedDiffusion(model.backbone, PROTEIN, 4).save_pretrained(plain)
    code = ("from vidd.diffusion.masked import MaskedDiffusion; "
            f"m = MaskedDiffusion.load({str(path)!r}); print(type(m).__name__, int(m.designable.sum())); "
            f"p = MaskedDiffusion.load({str(plain)!r}); print(type(p).__name__, type(p.backbone).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["OrderAgnosticDiffusion", "10", "MaskedDiffusion", "MaskedLMBackbone"]


def test_relaxed_inputs_are_refused_with_a_clear_message():
    model = bert_model(length=4)
    with pytest.raises(NotImplementedError, match="drakes"):
        model.backbone(torch.zeros(1, 4, PROTEIN.size + 1), torch.zeros(1))


def test_backbone_errors():
    lm = tiny_bert()
    with pytest.raises(ValueError, match="unknown masked-LM architecture"):
        MaskedLMBackbone(MaskedLMBackbone.Config("gpt", {}, [0, 1]), lm)
    with pytest.raises(ValueError, match="lacks"):
        vocabulary_ids({"A": 0}, PROTEIN, "[MASK]")


def test_missing_extra_names_the_extra():
    with pytest.raises(MissingExtra, match=r"pip install 'vidd\[antibody\]'"):
        require("vidd_no_such_module_xyz", "antibody", "a test")
    with pytest.raises(MissingExtra, match=r"--no-deps evodiff==1.1.2"):
        require("vidd_no_such_module_xyz", "evodiff", "a test")


# ------------------------------------------------------------------ fine-tuning on an adapter model
def count_a(seqs):
    return np.array([s[DESIGN].count("A") / 10 for s in seqs], dtype=float)


@pytest.mark.parametrize("method", ["vidd", "ddpo"])
def test_finetuning_an_adapter_model_keeps_the_framework(tmp_path, method):
    from vidd import FinetuneConfig, finetune

    model = bert_model(vh_template())
    before = [p.clone() for p in model.parameters()]
    config = FinetuneConfig(method=method, iterations=2, steps=4, batch_size=4, accumulation=1, lr=1e-3,
                            eval_every=1, eval_samples=4, final_samples=6, likelihood_samples=2)
    result = finetune(model, count_a, config, eval_reward=count_a, out=tmp_path / "run")
    student = result.model
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))
    traj = student.sample(6, 4, torch.Generator().manual_seed(0), record=True)
    assert_infilling(student, traj.states, vh_template())
    final = [s for _, s in read_fasta(tmp_path / "run" / "samples" / "final.fasta")]
    assert len(final) == 6 and all(s[:5] == VH[:5] and s[15:] == VH[15:] for s in final)
    loaded = MaskedDiffusion.load(tmp_path / "run" / "checkpoints" / "last.pt")
    assert isinstance(loaded, OrderAgnosticDiffusion) and torch.equal(loaded.template, vh_template())


def test_seeded_finetuning_of_an_adapter_model_is_reproducible(tmp_path):
    """The LM's dropout (0.1 in the tiny BERT's config) stays off in training: two seeded runs agree exactly."""
    from vidd.training import FinetuneConfig, Trainer

    model = bert_model(vh_template())
    assert model.backbone.lm.config.hidden_dropout_prob > 0
    assert not model.train().backbone.lm.training
    config = FinetuneConfig(iterations=2, steps=4, batch_size=4, accumulation=1, lr=1e-3, eval_every=0,
                            final_samples=2, likelihood_samples=2, seed=3)
    runs = [Trainer(config, model, count_a, log=lambda *a: None).run() for _ in range(2)]
    assert [r["loss"] for r in runs[0].metrics] == [r["loss"] for r in runs[1].metrics]
    for a, b in zip(runs[0].model.parameters(), runs[1].model.parameters()):
        assert torch.equal(a, b)


def test_svdd_guidance_on_an_adapter_model_keeps_the_framework():
    from vidd.guidance import SVDD, SVDDConfig

    model = bert_model(vh_template())
    x = SVDD(SVDDConfig(n_candidates=3)).generate(model, count_a, 4, steps=4, generator=torch.Generator().manual_seed(0))
    assert_infilling(model, x, vh_template())
    assert not (x == model.mask_index).any()


# ------------------------------------------------------------------ loaders of external checkpoints
def test_esm2_loader_on_a_tiny_model_saved_like_a_hub_checkpoint(tmp_path):
    pytest.importorskip("transformers", reason="ESM-2 needs the [protein] extra")
    folder = tmp_path / "esm2"
    lm = save_tiny_esm2(folder)

    model = load_esm2(folder, template=vh_template())
    backbone = model.backbone
    assert backbone.config.architecture == "esm"
    assert backbone.config.prefix == [0] and backbone.config.suffix == [2]  # <cls> ... <eos>
    # the adapter's logits are the LM's own logits at the letters' ids
    x = PROTEIN.encode([VH])
    ids = torch.tensor([[0, *(ESM_VOCAB.index(c) for c in VH), 2]])
    with torch.no_grad():
        direct = lm(input_ids=ids).logits[0, 1:-1][:, [ESM_VOCAB.index(c) for c in PROTEIN.letters]]
        assert torch.allclose(backbone(x, torch.zeros(1))[0], direct, atol=1e-5)
    traj = model.sample(3, 5, torch.Generator().manual_seed(0), record=True)
    assert_infilling(model, traj.states, vh_template())
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_esm2(tmp_path / "nowhere", length=5)


def test_hf_bert_loader_on_a_tiny_model(tmp_path):
    transformers = pytest.importorskip("transformers", reason="BERT needs the [protein] extra")
    lm = tiny_bert()
    (tmp_path / "vocab.txt").write_text("\n".join(ANTIBERTY_VOCAB) + "\n")
    folder = tmp_path / "bert"
    lm.save_pretrained(folder)
    transformers.BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=False).save_pretrained(folder)
    model = from_hf_masked_lm(folder, length=8)
    assert model.backbone.config.token_ids == [ANTIBERTY_VOCAB.index(c) for c in PROTEIN.letters] + [4]
    seqs = PROTEIN.decode(model.sample(2, 4, torch.Generator().manual_seed(0)))
    assert all(len(s) == 8 for s in seqs)


def test_evodiff_oadm_loader_on_a_tiny_bytenet_in_evodiff_checkpoint_format(tmp_path):
    evodiff_model = pytest.importorskip("evodiff.model", reason="EvoDiff is installed by hand (docs/tasks/antibody.md)")
    config = {"d_embed": 8, "d_model": 16, "n_layers": 2, "kernel_size": 3, "r": 4, "slim": True,
              "activation": "gelu"}
    torch.manual_seed(0)
    net = evodiff_model.ByteNetLMTime(**evodiff_oadm_arguments(config)).eval()
    path = tmp_path / "oaar-tiny.tar"  # evodiff's checkpoints: DDP-prefixed state dicts under model_state_dict
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    model = load_evodiff_oadm(path, config, template=vh_template())
    x = PROTEIN.encode([VH])
    alphabet = "ACDEFGHIKLMNPQRSTVWYBZXJOU-*#@!"
    with torch.no_grad():
        direct = net(torch.tensor([[alphabet.index(c) for c in VH]]), torch.zeros(1, dtype=torch.long))[0, :, :20]
        assert torch.allclose(model.backbone(x, torch.zeros(1))[0], direct, atol=1e-5)
    traj = model.sample(3, 4, torch.Generator().manual_seed(0), record=True)
    assert_infilling(model, traj.states, vh_template())
    model.save_pretrained(tmp_path / "m")
    assert isinstance(MaskedDiffusion.load(tmp_path / "m"), OrderAgnosticDiffusion)
    arguments = evodiff_oadm_arguments(json.loads(evodiff_config_path().read_text()))  # the 38M model's shape
    assert (arguments["d_model"], arguments["n_layers"], arguments["n_tokens"]) == (1024, 16, 31)
    torch.save({"weights": {}}, tmp_path / "bad.tar")
    with pytest.raises(ValueError, match="model_state_dict"):
        load_evodiff_oadm(tmp_path / "bad.tar", config, length=5)


def test_evodiff_checkpoints_are_read_without_unpickling_code(tmp_path):
    torch.save({"model_state_dict": {}, "extra": Path}, tmp_path / "code.tar")  # a pickled global: refused
    with pytest.raises(ValueError, match="without running code"):
        load_evodiff_oadm(tmp_path / "code.tar", {}, length=5)
