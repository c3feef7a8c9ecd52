"""`vidd` with the fake MOSES molecules of `fake_moses` (for the scripts' smoke tests, which run `$VIDD ...`):
    VIDD="python tests/support/fake_moses_cli.py" bash scripts/...
Set $VIDD_ASSETS to a folder made by `write_fake_moses_asset` and $VIDD_CACHE to a scratch folder."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.fake_moses import use_fake_moses  # noqa: E402

from vidd.cli import app  # noqa: E402

if __name__ == "__main__":
    use_fake_moses(setattr)
    app(prog_name="vidd")
