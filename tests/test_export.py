import json

import pytest
import torch

from gans import checkpoint
from gans.export import ExportError, export_generator, load_exported, next_version
from gans.loop import fit
from tests.conftest import tiny_config


def test_export_writes_a_versioned_torchscript_with_signature(tmp_path, tiny_dataset):
    cfg = tiny_config(train={"steps": 2})
    state = fit(cfg, tiny_dataset, work_dir=tmp_path / "work")
    generator = checkpoint.load_generator(state)
    root = tmp_path / "models"

    first = export_generator(generator, cfg=state["config"], root=root)
    second = export_generator(generator, cfg=state["config"], root=root)
    assert (first.name, second.name) == ("1", "2")
    assert (root / "LATEST").read_text().strip() == "2"
    assert next_version(root) == "3"
    assert sorted(p.name for p in root.iterdir()) == ["1", "2", "LATEST"]  # no temp dirs left behind

    model, signature = load_exported(first)
    assert signature["inputs"][0] == {"name": "z", "shape": [-1, 8], "dtype": "float32", "distribution": "standard normal"}
    assert signature["outputs"][0]["shape"] == [-1, 1, 32, 32]
    assert signature["outputs"][0]["value_range"] == [-1.0, 1.0]
    assert signature["parity_max_abs_diff"] <= 1e-5 and len(signature["params_hash"]) == 16
    z = torch.randn(7, 8)
    with torch.no_grad():
        images = model(z)
        assert torch.allclose(images, generator(z), atol=1e-5)
    assert images.shape == (7, 1, 32, 32) and images.abs().max() <= 1


def test_export_refuses_to_overwrite_and_reports_parity_failures(tmp_path, tiny_dataset, monkeypatch):
    state = fit(tiny_config(train={"steps": 1}), tiny_dataset, work_dir=tmp_path / "work")
    generator = checkpoint.load_generator(state)
    export_generator(generator, cfg=state["config"], root=tmp_path / "m", version="v1")
    with pytest.raises(ExportError, match="already exists"):
        export_generator(generator, cfg=state["config"], root=tmp_path / "m", version="v1")

    import gans.export

    monkeypatch.setattr(gans.export, "parity", lambda *args, **kwargs: 0.5)
    with pytest.raises(ExportError, match="differs from the eager model by 0.5"):
        export_generator(generator, cfg=state["config"], root=tmp_path / "m", version="v2")
    assert not (tmp_path / "m" / "v2").exists()
    assert json.loads((tmp_path / "m" / "v1" / "signature.json").read_text())["version"] == "v1"
