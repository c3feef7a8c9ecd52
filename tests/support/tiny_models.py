"""Tiny randomly initialised models of the real classes, saved in the real formats (what a user copies in from
a model hub): an ESM-2 masked LM and an ESMFold folding model, both Hugging Face folders (`save_pretrained`)."""

from __future__ import annotations

from pathlib import Path

import torch

#: the ESM-2 vocabulary (facebook/esm2_* vocab.txt)
ESM_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO", ".", "-", "<null_1>", "<mask>"]


def _esm_config(transformers, **extra):
    return transformers.EsmConfig(vocab_size=len(ESM_VOCAB), hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                                  pad_token_id=1, mask_token_id=ESM_VOCAB.index("<mask>"),
                                  position_embedding_type="rotary", token_dropout=True, **extra)


def save_tiny_esm2(folder: Path, seed: int = 0):
    """A tiny `EsmForMaskedLM` and its `EsmTokenizer` saved to `folder`; returns the LM (eval mode)."""
    import transformers

    torch.manual_seed(seed)
    lm = transformers.EsmForMaskedLM(_esm_config(transformers)).eval()
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(ESM_VOCAB) + "\n")
    lm.save_pretrained(folder)
    transformers.EsmTokenizer(str(vocab)).save_pretrained(folder)
    return lm


def save_tiny_esmfold(folder: Path, seed: int = 0):
    """A tiny `EsmForProteinFolding` (ESM-2 trunk, one folding block, one structure-module block, one recycle)
    saved to `folder` as facebook/esmfold_v1 is (config.json with is_folding_model + weights); returns it."""
    import transformers

    torch.manual_seed(seed)
    trunk = {"num_blocks": 1, "sequence_state_dim": 32, "pairwise_state_dim": 16, "sequence_head_width": 16,
             "pairwise_head_width": 8, "position_bins": 8, "max_recycles": 1, "chunk_size": None,
             "structure_module": {"sequence_dim": 32, "pairwise_dim": 16, "ipa_dim": 8, "resnet_dim": 8,
                                  "num_heads_ipa": 2, "num_qk_points": 2, "num_v_points": 2, "num_blocks": 1,
                                  "num_resnet_blocks": 1}}
    config = _esm_config(transformers, is_folding_model=True, vocab_list=ESM_VOCAB, emb_layer_norm_before=False,
                         esmfold_config={"fp16_esm": True, "lddt_head_hid_dim": 16, "trunk": trunk})
    model = transformers.EsmForProteinFolding(config).eval()
    model.save_pretrained(folder)
    return model
