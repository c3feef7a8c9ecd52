"""Write docs/licenses.md: the licence of every bundled asset, every data file vidd fetches, and every package
that vidd's default install and each of its extras bring in (read from the installed packages' metadata).

    .venv/bin/python scripts/write_licenses.py      # in an environment with every extra installed
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "src" / "vidd" / "assets"
OUT = ROOT / "docs" / "licenses.md"

#: what each folder of bundled assets was trained on (the models themselves are vidd's, Apache-2.0)
ASSET_DATA = {
    "dhs-hepg2": "DNase-hypersensitive sites in the `dnadiffusion` 0.0.0.dev0 wheel (MIT; data from the public "
                 "ENCODE DHS index)",
    "moses": "the MOSES training set in the `molsets` 0.3.1 wheel (MIT; molecules from ZINC)",
}
#: files fetched from registry wheels into the cache on first use (vidd.data.fetch), with their licences
FETCHED = [
    ("DHS sites (`dhs-hepg2` data)", "`dnadiffusion==0.0.0.dev0` wheel, PyPI", "MIT; data from the public ENCODE "
     "DHS index"),
    ("MOSES molecules (`moses-qed`, `parp1-docking` data)", "`molsets==0.3.1` wheel, PyPI", "MIT; molecules from "
     "ZINC"),
    ("AntiBERTy weights (`antibody-cdrh3` prior)", "`antiberty==0.1.3` wheel, PyPI", "MIT"),
]
COPYLEFT = re.compile(r"GPL|GENERAL PUBLIC|MPL|Mozilla", re.IGNORECASE)
HEADER = """# Licences

vidd itself is licensed under Apache-2.0 (`LICENSE`). This page lists what else it ships, fetches and
installs. It is written by `scripts/write_licenses.py` from the installed packages' metadata (licence,
version); the versions are those of the environment the page was written in.

**Non-commercial**: IgFold (`igfold`, in the `[antibody]` extra) is licensed by Johns Hopkins University for
academic, non-commercial use only. `scripts/setup.sh` installs it only when asked (`VIDD_EXTRAS=antibody`);
without it, the antibody task's IgFold reward terms and structure metrics are unavailable and their tests
are skipped.
"""


def licence(name: str) -> str:
    """The licence an installed package declares: License-Expression, a short License field, its licence
    classifiers, else the first line of the licence file in its dist-info."""
    dist = distribution(name)
    meta = dist.metadata
    if meta.get("License-Expression"):
        return meta["License-Expression"]
    text = (meta.get("License") or "").strip()
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    if text and len(text) <= 60 and "\n" not in text and text.upper() != "UNKNOWN":
        return text
    if classifiers:
        return ", ".join(dict.fromkeys(classifiers))
    files = [f for f in dist.files or [] if ".dist-info" in str(f) and "LICEN" in f.name.upper()]
    text = text or (files[0].read_text() if files else "")
    first = next((line.strip("# ").strip() for line in text.splitlines() if line.strip()), "")
    return f"{first[:60]} (first line of its licence)" if first else "not stated by the package"


def installed_version(name: str) -> str | None:
    try:
        return distribution(name).version
    except PackageNotFoundError:
        return None


def closure(requirements: list[str], extras: dict[str, list[str]]) -> dict[str, tuple[str, str]]:
    """Every package `requirements` bring in, with the requirement that first brought it and by whom:
    {canonical name: (requirement, required by)}. `vidd[...]` requirements expand to vidd's own extras."""
    found: dict[str, tuple[str, str]] = {}
    todo = [(Requirement(r), "vidd") for r in requirements]
    while todo:
        req, parent = todo.pop(0)
        name = canonicalize_name(req.name)
        if name == "vidd":
            todo += [(Requirement(r), "vidd") for extra in req.extras for r in extras[extra]]
            continue
        if name in found:
            continue
        found[name] = (f"{req.name}{''.join(f'[{e}]' for e in sorted(req.extras))}{req.specifier}", parent)
        if installed_version(name) is None:
            continue
        for text in distribution(name).requires or []:
            sub = Requirement(text)
            wanted = [""] + sorted(req.extras)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in wanted):
                todo.append((sub, name))
    return found


def table(packages: dict[str, tuple[str, str]]) -> list[str]:
    rows = ["| package | asked for | by | version here | licence |", "|---|---|---|---|---|"]
    for name in sorted(packages):
        requirement, parent = packages[name]
        version = installed_version(name)
        rows.append(f"| {name} | `{requirement}` | {parent} | {version or 'not installed'} | "
                    f"{licence(name) if version else '?'} |")
    return rows


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    lines = [HEADER, "## Bundled models and oracles", "",
             "Package data of vidd (`src/vidd/assets`, in the wheel); trained by vidd's own commands "
             "(`src/vidd/assets/MANIFEST.json`), licensed like vidd (Apache-2.0).", "",
             "| folder | files | trained on |", "|---|---|---|"]
    for folder in sorted(p for p in ASSETS.iterdir() if p.is_dir()):
        files = ", ".join(f"`{f.relative_to(folder).as_posix()}`" for f in sorted(folder.rglob("*")) if f.is_file())
        lines.append(f"| `{folder.name}/` | {files} | {ASSET_DATA[folder.name]} |")
    lines += ["", "## Data fetched on first use", "",
              "Into `$VIDD_CACHE` (default `~/.cache/vidd`), checked against a sha256.", "",
              "| what | from | licence |", "|---|---|---|"]
    lines += [f"| {what} | {source} | {lic} |" for what, source, lic in FETCHED]
    default = closure(project["dependencies"], extras)
    every = default | closure([f"vidd[{e}]" for e in extras], extras)
    copyleft = sorted(f"{n} ({licence(n)})" for n in every if installed_version(n) and COPYLEFT.search(licence(n)))
    lines += ["", "## Copyleft", "", "Packages below under a copyleft licence (GPL, LGPL, MPL), used unmodified "
              "as libraries: " + ("; ".join(copyleft) or "none") + "."]
    lines += ["", "## Default install", "",
              "`pip install vidd`: these packages, all from PyPI (torch: the build `scripts/setup.sh` installs, "
              "see the README).", ""] + table(default)
    for extra in sorted(extras):
        included = [e for r in extras[extra] if canonicalize_name(Requirement(r).name) == "vidd"
                    for e in sorted(Requirement(r).extras)]
        base = default | closure([f"vidd[{e}]" for e in included], extras)
        added = {k: v for k, v in closure(extras[extra], extras).items() if k not in base}
        onto = " and ".join(["the default install"] + [f"`[{e}]`" for e in included])
        lines += ["", f"## Extra `[{extra}]`", "", f"What `pip install 'vidd[{extra}]'` adds to {onto}.", ""]
        lines += table(added)
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
