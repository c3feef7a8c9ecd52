"""Committed assets are verified against MANIFEST.json when first loaded, each file version hashed once."""

from __future__ import annotations

import json
import os

import pytest
from support.assets import write_manifest
from support.toy import toy_model

from vidd.core import manifest
from vidd.core.manifest import AssetError, verify_asset
from vidd.tasks.base import asset


@pytest.fixture
def assets(tmp_path):
    root = tmp_path / "assets"
    toy_model().save_pretrained(root / "task" / "pretrained")
    (root / "task" / "report.json").write_text("{}")
    write_manifest(root, "task/pretrained", "task/report.json")
    return root


def test_verified_once_per_file_version(assets, tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "verified.json"
    verify_asset(assets / "task" / "pretrained", assets, cache)
    assert len(json.loads(cache.read_text())) == 2  # config.json and model.safetensors

    def no_hashing(path):
        raise AssertionError(f"{path} hashed again")

    monkeypatch.setattr(manifest, "sha256_file", no_hashing)
    verify_asset(assets / "task" / "pretrained", assets, cache)  # from the cache
    weights = assets / "task" / "pretrained" / "model.safetensors"
    os.utime(weights, ns=(1, 1))  # another version of the file: hashed again
    with pytest.raises(AssertionError, match="hashed again"):
        verify_asset(assets / "task" / "pretrained", assets, cache)


def test_a_changed_or_unlisted_asset_is_refused(assets):
    weights = assets / "task" / "pretrained" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(AssetError, match="model.safetensors: does not match .*MANIFEST.json .*restore it"):
        verify_asset(assets / "task" / "pretrained", assets)
    (assets / "task" / "report.json").write_text("{} ")
    with pytest.raises(AssetError, match="3 bytes"):
        verify_asset(assets / "task" / "report.json", assets)
    (assets / "task" / "other.json").write_text("{}")
    with pytest.raises(AssetError, match="not listed"):
        verify_asset(assets / "task" / "other.json", assets)
    (assets / "MANIFEST.json").unlink()
    with pytest.raises(AssetError, match="MANIFEST.json: not found"):
        verify_asset(assets / "task" / "report.json", assets)


def test_the_tasks_assets_are_verified_on_load(assets, monkeypatch, tmp_path):
    monkeypatch.setenv("VIDD_ASSETS", str(assets))
    monkeypatch.setenv("VIDD_CACHE", str(tmp_path / "cache"))
    assert asset("task/pretrained") == assets / "task" / "pretrained"
    assert (tmp_path / "cache" / "verified-assets.json").is_file()
    (assets / "task" / "pretrained" / "config.json").write_text("{}")
    with pytest.raises(AssetError, match="config.json: does not match"):
        asset("task/pretrained")
