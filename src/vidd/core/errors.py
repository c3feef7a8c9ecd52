"""Errors that come from the user's input (files, configs, data): the CLI prints them without a traceback."""

from pathlib import Path


class UserError(Exception):
    pass


def read_text(path: str | Path, expected: str, error: type[UserError] = UserError) -> str:
    """A user's file as UTF-8 text; `error` (naming the file, the byte and the `expected` kind of file) for a
    binary or otherwise undecodable one."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start}); expected {expected}") from None
