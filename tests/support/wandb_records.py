"""Read back an offline W&B run: the records of its `.wandb` file (LevelDB log blocks of protobuf `Record`s)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32768
HEADER = 7  # file: b":W&B", magic (2 bytes), version; record: crc32 (4), length (2), type (1)
FULL, LAST = 1, 4


def records(path: Path):
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, chunks = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER]) if left >= HEADER else (0, 0, 0)
        if kind == 0:  # the block's zero padding
            pos += left
            continue
        chunks += data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            chunks = b""
            yield record


def offline_run(folder: Path) -> dict:
    """{"config": {...}, "history": [{key: value, "_step": n}], "summary": {...}} of the one offline run under
    `folder` (the `dir` given to wandb.init)."""
    (path,) = folder.glob("wandb/offline-run-*/*.wandb")
    out = {"config": {}, "history": [], "summary": {}}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["config"].update((u.key, json.loads(u.value_json)) for u in record.run.config.update)
        elif kind == "config":
            out["config"].update((u.key, json.loads(u.value_json)) for u in record.config.update)
        elif kind == "history":
            out["history"].append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            out["summary"].update(("/".join(u.nested_key) or u.key, json.loads(u.value_json))
                                  for u in record.summary.update)
    return out
