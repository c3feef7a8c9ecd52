"""Files vidd reads without running code in them, each carrying its own hash.

- A *model folder* (the layout of the Hugging Face libraries): `config.json` (what the model is, its
  provenance, and the sha256 of its weights) + `model.safetensors` (the tensors). Written by
  `write_folder` into a temporary folder that then replaces the target, so a reader never sees half of one;
  `read_folder` checks the weights against the hash before it builds anything.
- A *state file* (a run's `checkpoints/last.pt`, pretraining's `state.pt`): a torch file of plain containers
  and tensors, read with `torch.load(weights_only=True)` (no pickled code runs) and checked against the
  content hash stored in it (`content_digest`), so a flipped byte or a truncated file is an error, not a
  silently different run.
- Legacy torch pickles (vidd 0.1's `.pt` models, checkpoints without a hash) load only through
  `load_trusted`, which the CLI reaches only with `--trust-checkpoint` or `vidd convert-checkpoint`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
import shutil
import tempfile
import warnings
from pathlib import Path

import safetensors.torch
import torch

from vidd.core.atomic import atomic_torch_save, umask_mode
from vidd.core.errors import UserError, read_text

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: the key of a state file that holds the hash of everything else in it
DIGEST_KEY = "sha256"
TRUST_HINT = ("only if you trust where it came from: pass --trust-checkpoint, or convert it once with "
              "`vidd convert-checkpoint OLD NEW_DIR --trust-checkpoint`")


class CheckpointError(UserError, ValueError):
    """A file that is not a usable vidd model, checkpoint or state."""


# ------------------------------------------------------------------ hashes
def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _unique_tensors(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of a state dict with tied ones (the same storage, e.g. an LM's input and output
    embeddings) kept once: (tensors, {alias: kept name})."""
    tensors, aliases, seen = {}, {}, {}
    for name, t in state_dict.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.detach().cpu().contiguous()
    return tensors, aliases


def weights_bytes(state_dict: dict) -> tuple[bytes, dict[str, str]]:
    """The safetensors serialisation of a state dict (deterministic: no metadata) and its tied aliases."""
    tensors, aliases = _unique_tensors(state_dict)
    return safetensors.torch.save(tensors), aliases


def weights_sha256(state_dict: dict) -> str:
    """The sha256 of a model's weights: that of the `model.safetensors` `write_folder` writes for them."""
    return hashlib.sha256(weights_bytes(state_dict)[0]).hexdigest()


def content_digest(obj) -> str:
    """sha256 of a nest of dicts, lists/tuples, tensors and plain values (what a state file may hold)."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h, obj) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}:".encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}:".encode())
        for v in obj:
            _feed(h, v)
    elif obj is None or isinstance(obj, (bool, int, float, str)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    else:
        raise TypeError(f"a state file holds plain values and tensors only, got a {type(obj).__name__}")


# ------------------------------------------------------------ model folders
def write_folder(path: str | Path, config: dict, state_dict: dict) -> None:
    """Write `config` (JSON) and the weights as a model folder at `path`, replacing any folder there in one
    rename. `config` gains `weights`: the file name, its sha256 and size, and the tied aliases."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path} exists and is not a folder (model files are folders: {CONFIG_FILE} + "
                              f"{WEIGHTS_FILE})")
    data, aliases = weights_bytes(state_dict)
    config = {**config, "weights": {"file": WEIGHTS_FILE, "sha256": hashlib.sha256(data).hexdigest(),
                                    "bytes": len(data), "aliases": aliases}}
    try:
        text = json.dumps(config, indent=2) + "\n"
    except TypeError as e:
        raise CheckpointError(f"{path}: the model's config is not JSON ({e})") from e
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        (tmp / WEIGHTS_FILE).write_bytes(data)
        (tmp / CONFIG_FILE).write_text(text)
        for p in (tmp, tmp / WEIGHTS_FILE, tmp / CONFIG_FILE):
            os.chmod(p, umask_mode(0o777 if p.is_dir() else 0o666))
        _replace_folder(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_folder(new: Path, path: Path) -> None:
    """Move the complete folder `new` to `path`; an old folder there is moved aside first (named like a
    temporary, `.NAME.*.tmp`, so a run folder's clean-up removes it if a crash leaves it behind)."""
    if not path.exists():
        os.rename(new, path)
        return
    old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old.tmp"))
    os.rename(path, old / path.name)
    os.rename(new, path)
    shutil.rmtree(old)


def read_folder(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, state dict) of a model folder, the weights checked against the sha256 in its config."""
    path = Path(path)
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise CheckpointError(f"{path}: no {CONFIG_FILE} (a vidd model is a folder with {CONFIG_FILE} and "
                              f"{WEIGHTS_FILE})")
    config = read_json(config_file)
    weights = config.get("weights") if isinstance(config, dict) else None
    if not isinstance(weights, dict) or not {"file", "sha256"} <= set(weights):
        raise CheckpointError(f"{config_file}: no `weights` entry with the file and its sha256")
    weights_file = path / Path(weights["file"]).name
    if not weights_file.is_file():
        raise CheckpointError(f"{path}: the weights file {weights_file.name} is missing")
    data = weights_file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != weights["sha256"]:
        raise CheckpointError(f"{weights_file}: corrupted: its sha256 is {digest}, {CONFIG_FILE} says "
                              f"{weights['sha256']} ({len(data)} bytes, expected {weights.get('bytes')})")
    try:
        tensors = safetensors.torch.load(data)
    except Exception as e:  # noqa: BLE001 - a file that matches its hash but does not parse
        raise CheckpointError(f"{weights_file}: not a safetensors file ({e})") from e
    for alias, kept in weights.get("aliases", {}).items():
        tensors[alias] = tensors[kept]
    return config, tensors


def read_json(path: Path):
    try:
        return json.loads(read_text(path, "JSON", CheckpointError))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from e


# -------------------------------------------------------------- state files
def save_state(state: dict, path: str | Path) -> None:
    """torch.save of `state` (plain values and tensors) with its content hash, atomically."""
    atomic_torch_save({**state, DIGEST_KEY: content_digest(state)}, path)


def load_state(path: str | Path, map_location="cpu", trust: bool = False) -> dict:
    """A state file written by `save_state`, read without running pickled code and checked against its hash.

    trust=True (the user's explicit --trust-checkpoint) also reads a file without a hash, or a vidd 0.1
    checkpoint holding numpy objects (`load_trusted`: still no pickled call but those few types)."""
    path = Path(path)
    _check_file(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line), None)
        if found is None:  # no pickled Python object refused: the file is no (complete) pickle
            raise CheckpointError(f"{path}: not a readable checkpoint: truncated or corrupted") from e
        if trust:
            return load_trusted(path, map_location)
        raise CheckpointError(f"{path}: holds Python objects that a safe load refuses ({found[:200]}); it was "
                              f"not written by this vidd. Load it {TRUST_HINT}") from e
    except Exception as e:  # noqa: BLE001 - truncated or garbled files, whatever torch raises for them
        raise CheckpointError(f"{path}: not a readable checkpoint: truncated or corrupted "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a vidd checkpoint (holds a {type(state).__name__})")
    if DIGEST_KEY not in state:
        if trust:
            return state
        raise CheckpointError(f"{path}: carries no content hash (written by vidd 0.1, or not by vidd); "
                              f"load it {TRUST_HINT}")
    stored = state.pop(DIGEST_KEY)
    try:
        digest = content_digest(state)
    except TypeError as e:
        raise CheckpointError(f"{path}: not a vidd checkpoint ({e})") from e
    if digest != stored:
        raise CheckpointError(f"{path}: corrupted: its content does not match the hash stored in it")
    return state


#: what a vidd 0.1 checkpoint may hold beyond tensors and plain containers: numpy arrays and scalars (the
#: reward cache), numpy random states and generators with their bit generators, paths; each only constructs its
#: own type, so nothing here can call arbitrary code when unpickled (the unpickler refuses every other global)
LEGACY_GLOBALS = (
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.dtypes.Float64DType", "numpy.dtypes.Float32DType", "numpy.dtypes.Int64DType", "numpy.dtypes.UInt32DType",
    "numpy.dtypes.BoolDType",
    "numpy.random._pickle.__bit_generator_ctor", "numpy.random._pickle.__randomstate_ctor",
    "numpy.random._pickle.__generator_ctor", "numpy.random.mtrand.RandomState", "numpy.random._mt19937.MT19937",
    "numpy.random._pcg64.PCG64", "numpy.random._pcg64.PCG64DXSM", "numpy.random._philox.Philox",
    "numpy.random._sfc64.SFC64",
    "numpy.random.bit_generator.SeedSequence", "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
    "collections.OrderedDict", "pathlib.PosixPath")


def _legacy_global(name: str) -> tuple[object, str] | None:
    """The object a LEGACY_GLOBALS name stands for, paired with that name (numpy 2 moved numpy.core to
    numpy._core; a file names whichever its numpy had); None where this numpy has no such object."""
    module, _, attribute = name.rpartition(".")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy.core's deprecation shim
            return getattr(importlib.import_module(module), attribute), name
    except (ImportError, AttributeError):
        return None


def load_trusted(path: str | Path, map_location="cpu"):
    """A vidd 0.1 torch pickle (no content hash), read by torch's restricted unpickler with the few numpy and
    standard-library types such files hold allowed (LEGACY_GLOBALS): a file that names any other callable is
    refused, so even a trusted-by-name file cannot run code."""
    path = Path(path)
    _check_file(path)
    try:
        allowed = [found for found in map(_legacy_global, LEGACY_GLOBALS) if found is not None]
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: holds Python objects outside what a vidd 0.1 checkpoint holds; it is not "
                              f"loaded ({str(e).splitlines()[0][:200]})") from e
    except Exception as e:  # noqa: BLE001 - not a torch zip file, truncated, garbled
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''})") from e


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes); it was cut off while being written")
