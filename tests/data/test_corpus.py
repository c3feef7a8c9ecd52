"""`vidd pretrain --data` on the formats people have: FASTA of varying lengths, a CSV/TSV column, SMILES (as
SELFIES); the alphabets DNA, RNA, protein, SELFIES and custom ones; padding for varying lengths."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vidd.cli import app
from vidd.core.alphabets import DNA, PAD, RNA, named
from vidd.core.errors import UserError
from vidd.data.corpus import load_corpus
from vidd.diffusion.masked import MaskedDiffusion

TINY = ["--set", "model.hidden=8", "--set", "model.stacks=1", "--set", "model.dilations=[1,2]", "--set",
        "batch_size=8", "--set", "epochs=2", "--set", "warmup_steps=1", "--set", "eval_every=100", "--set", "ema=0"]


def pretrain(*args):
    r = CliRunner().invoke(app, ["pretrain", *map(str, args), *TINY])
    assert r.exit_code == 0, r.output
    return r


def random_seqs(letters, lengths, seed=0):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(letters), n)) for n in lengths]


def samples(out, n=64):
    model = MaskedDiffusion.load(out / "model")
    return model, model.alphabet.decode(model.sample(n, 8, torch.Generator().manual_seed(0)))


def test_variable_length_fasta_pads_and_samples_decode_to_variable_lengths(tmp_path):
    lengths = [6, 9, 12] * 16
    data = tmp_path / "train.fasta"
    data.write_text("".join(f">s{i} any header\n{s.lower()}\n" for i, s in enumerate(random_seqs("ACGT", lengths))))
    pretrain("--data", data, "--out", tmp_path / "pt")
    model, seqs = samples(tmp_path / "pt")
    assert model.length == 12 and model.alphabet.pad == PAD and model.alphabet.letters == (*"ACGT", PAD)
    assert len({len(s) for s in seqs}) > 1 and max(map(len, seqs)) <= 12  # the model generates the pads
    assert set("".join(seqs)) <= set("ACGT")


def test_csv_column_with_a_custom_alphabet_and_fixed_lengths_needs_no_pad(tmp_path):
    seqs = random_seqs("ACDE", [10] * 40)
    data = tmp_path / "designs.csv"
    data.write_text("name,score,seq\n" + "".join(f"d{i},{i / 10},{s}\n" for i, s in enumerate(seqs)))
    pretrain("--data", data, "--column", "seq", "--alphabet", "custom:ACDE", "--out", tmp_path / "pt")
    model, sampled = samples(tmp_path / "pt", n=8)
    assert (model.alphabet.letters, model.alphabet.pad, model.length) == ("ACDE", None, 10)
    assert {len(s) for s in sampled} == {10}


def test_tsv_of_rna_and_fasta_validation_file_of_other_lengths(tmp_path):
    train, valid = tmp_path / "train.tsv", tmp_path / "valid.fa"
    train.write_text("id\tsequence\n" + "".join(f"r{i}\t{s}\n" for i, s in enumerate(random_seqs("ACGU", [8] * 20))))
    valid.write_text(">v\nACGUACGUAC\n")
    corpus = load_corpus(train, valid, "rna", "sequence")
    assert corpus.alphabet == RNA.padded() and corpus.length == 10 and len(corpus.train) == 20
    assert corpus.valid == ["ACGUACGUAC"]


def test_smiles_file_is_read_as_selfies(tmp_path):
    pytest.importorskip("selfies")
    pytest.importorskip("rdkit")
    from vidd.chem.molecules import selfies_to_smiles

    data = tmp_path / "mols.smi"
    data.write_text("CCO\nc1ccccc1\nCC(=O)O\nCCN\nCCCC\nOCCO\n" * 4)
    corpus = load_corpus(data)
    assert corpus.alphabet.name == "SELFIES" and corpus.alphabet.pad == "[nop]" and "[=O]" in corpus.alphabet.letters
    assert corpus.length == 8 and "[C][=C][C][=C][C][=C][Ring1][=Branch1]" in corpus.train  # benzene, the longest
    pretrain("--data", data, "--out", tmp_path / "pt")
    _, seqs = samples(tmp_path / "pt", n=16)
    assert any(selfies_to_smiles(s) for s in seqs)


def test_alphabets_by_name_and_custom():
    assert named("dna") is DNA and named("RNA").letters == "ACGU" and named("Protein").size == 20
    assert named("custom:XYZ").letters == "XYZ"
    padded = DNA.padded()
    assert padded.padded() is padded and padded.decode(padded.encode(["AC", "ACGT"])) == ["AC", "ACGT"]
    for bad in ("custom:", "custom:AAB", "custom:A[B", "morse"):
        with pytest.raises(UserError, match="alphabet"):
            named(bad)


@pytest.mark.parametrize("args, message", [
    (["--data", "{csv}"], "needs --column NAME"),
    (["--data", "{csv}", "--column", "nope"], "no column 'nope'; columns: name, seq"),
    (["--data", "{fasta}", "--column", "seq"], "--column seq: applies to tables"),
    (["--data", "{fasta}", "--alphabet", "protein"], "character 'B' at position 3"),
    (["--data", "{smi}", "--alphabet", "DNA"], "SMILES files are read as SELFIES"),
])
def test_data_errors_are_one_line_and_name_the_problem(tmp_path, args, message):
    files = {"csv": tmp_path / "a.csv", "fasta": tmp_path / "a.fasta", "smi": tmp_path / "a.smi"}
    files["csv"].write_text("name,seq\na,ACGT\n")
    files["fasta"].write_text(">a\nACBD\n")
    files["smi"].write_text("CCO\n")
    r = CliRunner().invoke(app, ["pretrain", "--out", str(tmp_path / "pt"),
                                 *[a.format(**files) for a in args]])
    assert r.exit_code == 2 and message in r.output, r.output
