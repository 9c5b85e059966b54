"""Stage entry points turn user errors into one clear line and a non-zero exit, leaving nothing behind."""

import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.slow  # real Ray, DVC, servers or browsers: `make test-fast` leaves it out


def _stage(name, cwd):
    return subprocess.run(
        [sys.executable, "-m", f"pipeline.{name}"], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_a_params_typo_is_one_line_naming_the_key(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {"resolutoin": 32}}))
    result = _stage("prepare", tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "[prepare] error: Unknown key data.resolutoin; allowed keys: source, path, download, crop, resolution, channels, limit, min_face_prob, margin, min_size, workers, chunk_size, max_pixels."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_a_missing_input_names_the_stage_to_run(tmp_path):
    (tmp_path / "params.yaml").write_text("{}\n")
    result = _stage("evaluate", tmp_path)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "[evaluate] error: No checkpoint at artifacts/train/checkpoint.pt; run the train stage first."
    )
    assert "Traceback" not in result.stderr


def test_prepare_writes_dataset_manifest_and_preview(tmp_path):
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"data": {"limit": 12, "channels": 3, "resolution": 16}, "model": {"name": "mlp"}})
    )
    result = _stage("prepare", tmp_path)
    assert result.returncode == 0, result.stderr
    import json

    import numpy as np

    manifest = json.loads((tmp_path / "data/prepared/manifest.json").read_text())
    assert manifest["count"] == 12 and manifest["shape"] == [3, 16, 16] and manifest["source"] == "lfw-subset"
    assert manifest["stored_dtype"] == "uint8" and manifest["value_range"] == [-1.0, 1.0]
    images = np.load(tmp_path / "data/prepared/images.npy")
    assert images.shape == (12, 3, 16, 16) and len(manifest["content_sha256"]) == 64
    assert (tmp_path / "data/prepared/preview.png").stat().st_size > 500
