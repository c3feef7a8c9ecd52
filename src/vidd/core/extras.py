"""Optional dependencies behind extras: import them lazily, or fail with the command that installs them."""

from __future__ import annotations

import importlib

from vidd.core.errors import UserError


class MissingExtra(UserError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


#: how to install what no extra can declare (pins that conflict with vidd's own dependencies)
INSTALL_HINTS = {
    "evodiff": "evodiff pins numpy<2, so it is not a vidd extra; install it without its pins: pip install --no-deps "
               "evodiff==1.1.2 sequence-models==1.8.0 fair-esm==2.0.0 && pip install scikit-learn pandas seaborn lmdb "
               "blosum pdb-tools requests 'setuptools<81' (see docs/tasks/antibody.md)",
}


def require(module: str, extra: str, purpose: str):
    """Import `module`, or fail with the pip command that installs the extra providing it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = module.split(".")[0]
        how = INSTALL_HINTS.get(extra) or f"pip install 'vidd[{extra}]'"
        raise MissingExtra(f"{purpose} needs the Python package {package!r}: {how} ({type(e).__name__}: {e})") from e
