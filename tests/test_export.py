import json
import shutil

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch.nn.utils import parametrize

from gans import checkpoint
from gans.ema import standing_statistics
from gans.export import ExportError, export_generator, fold_spectral_norm, load_backend, load_exported, next_version
from gans.loop import fit
from gans.models import build_models
from gans.models.layers import SelfAttention
from tests.helpers import tiny_config

BATCH_SIZES = (1, 5, 17)


def trained_like_generator(cfg) -> torch.nn.Module:
    """A fresh generator that looks trained: self-attention switched on and standing BatchNorm statistics."""
    generator, _ = build_models(cfg)
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, SelfAttention):
                module.gamma.fill_(0.7)  # γ starts at 0, which would make the attention branch a no-op
    return standing_statistics(generator, cfg.model.z_dim, samples=64, batch_size=16)


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
    # One self-contained ONNX file: no .onnx.data side file for the weights.
    assert sorted(p.name for p in first.iterdir()) == ["generator.onnx", "generator.pt", "signature.json"]

    model, signature = load_exported(first)
    assert signature["inputs"][0] == {
        "name": "z",
        "shape": [-1, 8],
        "dtype": "float32",
        "distribution": "standard normal",
    }
    assert signature["outputs"][0]["shape"] == [-1, 1, 32, 32]
    assert signature["outputs"][0]["value_range"] == [-1.0, 1.0]
    assert signature["files"] == {"torchscript": "generator.pt", "onnx": "generator.onnx"}
    parity = signature["parity"]
    assert parity["batch_sizes"] == [1, 5, 17]
    assert 0 <= parity["torchscript"] <= 1e-5 and 0 <= parity["onnx"] <= 1e-5
    assert signature["parity_max_abs_diff"] == max(parity["torchscript"], parity["onnx"])
    assert signature["onnx_opset"] == onnx.load(first / "generator.onnx").opset_import[0].version >= 18
    assert len(signature["params_hash"]) == 16
    z = torch.randn(7, 8)
    with torch.no_grad():
        images = model(z)
        assert torch.allclose(images, generator(z), atol=1e-5)
    assert images.shape == (7, 1, 32, 32) and images.abs().max() <= 1


@pytest.mark.parametrize(
    "model",
    [
        {"name": "dcgan"},
        {"name": "sagan", "attention_res": 16},  # spectral norm everywhere + attention on the 16×16 maps
        {"name": "mlp"},
    ],
    ids=["dcgan", "sagan", "mlp"],
)
def test_onnx_runtime_matches_the_eager_generator(tmp_path, model):
    cfg = tiny_config(model=model)
    generator = trained_like_generator(cfg)
    if model["name"] == "sagan":
        assert any(isinstance(m, SelfAttention) for m in generator.modules())
    target = export_generator(generator, cfg=cfg, root=tmp_path)

    graph = onnx.load(target / "generator.onnx").graph
    assert [i.name for i in graph.input] == ["z"] and [o.name for o in graph.output] == ["images"]
    assert not [t.name for t in graph.initializer if "parametrizations" in t.name]  # spectral norm folded away
    session = onnxruntime.InferenceSession(str(target / "generator.onnx"), providers=["CPUExecutionProvider"])
    for batch in BATCH_SIZES:
        z = torch.randn(batch, cfg.model.z_dim)
        with torch.no_grad():
            expected = generator(z).numpy()
        (images,) = session.run(["images"], {"z": z.numpy()})
        assert images.shape == (batch, 1, 32, 32)
        assert np.abs(images - expected).max() <= 1e-5


def test_folding_spectral_norm_leaves_the_original_untouched():
    cfg = tiny_config(model={"name": "sagan"})
    generator = trained_like_generator(cfg)
    parametrized = [name for name, m in generator.named_modules() if parametrize.is_parametrized(m, "weight")]
    z = torch.randn(5, cfg.model.z_dim)
    with torch.no_grad():
        before = generator(z)
        folded = fold_spectral_norm(generator, cfg)
        after, folded_images = generator(z), folded(z)

    assert len(parametrized) >= 5
    assert [name for name, m in generator.named_modules() if parametrize.is_parametrized(m, "weight")] == parametrized
    assert not any(parametrize.is_parametrized(m) for m in folded.modules())
    assert torch.equal(before, after)
    assert (folded_images - before).abs().max() <= 1e-6 and not folded.training


def test_an_onnx_parity_failure_writes_nothing(tmp_path, monkeypatch):
    cfg = tiny_config()
    generator = trained_like_generator(cfg)
    export_generator(generator, cfg=cfg, root=tmp_path, version="v1")

    run = onnxruntime.InferenceSession.run
    monkeypatch.setattr(
        onnxruntime.InferenceSession, "run", lambda self, *args, **kwargs: [run(self, *args, **kwargs)[0] + 0.5]
    )
    with pytest.raises(ExportError, match=r"^ONNX output differs from the eager model by 0\.5 \(> 1e-05\)\.$"):
        export_generator(generator, cfg=cfg, root=tmp_path, version="v2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST", "v1"]  # no v2, no temp dir
    assert (tmp_path / "LATEST").read_text().strip() == "v1"


def test_export_refuses_to_overwrite_and_reports_parity_failures(tmp_path, tiny_dataset, monkeypatch):
    state = fit(tiny_config(train={"steps": 1}), tiny_dataset, work_dir=tmp_path / "work")
    generator = checkpoint.load_generator(state)
    export_generator(generator, cfg=state["config"], root=tmp_path / "m", version="v1")
    with pytest.raises(ExportError, match="already exists"):
        export_generator(generator, cfg=state["config"], root=tmp_path / "m", version="v1")

    import gans.export

    monkeypatch.setattr(gans.export, "parity", lambda *args, **kwargs: 0.5)
    with pytest.raises(ExportError, match="TorchScript output differs from the eager model by 0.5"):
        export_generator(generator, cfg=state["config"], root=tmp_path / "m", version="v2")
    assert not (tmp_path / "m" / "v2").exists()
    assert json.loads((tmp_path / "m" / "v1" / "signature.json").read_text())["version"] == "v1"


def test_both_backends_generate_the_same_images(tmp_path):
    cfg = tiny_config(model={"name": "sagan"})
    generator = trained_like_generator(cfg)
    target = export_generator(generator, cfg=cfg, root=tmp_path)
    z = np.random.default_rng(0).standard_normal((17, cfg.model.z_dim)).astype(np.float32)

    images = {}
    for backend in ("onnx", "torchscript"):
        generate, signature = load_backend(target, backend, threads=1)
        assert signature["version"] == "1"
        images[backend] = generate(z)
        assert images[backend].dtype == np.float32 and images[backend].shape == (17, 1, 32, 32)
    assert np.abs(images["onnx"] - images["torchscript"]).max() <= 1e-5
    with torch.no_grad():
        assert np.abs(images["onnx"] - generator(torch.from_numpy(z)).numpy()).max() <= 1e-5


def test_load_backend_names_valid_backends_and_missing_files(tmp_path):
    cfg = tiny_config()
    target = export_generator(trained_like_generator(cfg), cfg=cfg, root=tmp_path)
    with pytest.raises(ExportError) as unknown:
        load_backend(target, "tensorrt")
    assert str(unknown.value) == "Unknown backend 'tensorrt'; valid backends: onnx, torchscript."

    partial = tmp_path / "partial"
    shutil.copytree(target, partial)
    (partial / "generator.onnx").unlink()
    with pytest.raises(ExportError, match=r"has no generator\.onnx for the onnx backend"):
        load_backend(partial, "onnx")
    generate, _ = load_backend(partial, "torchscript")  # the other format still loads
    assert generate(np.zeros((2, 8), np.float32)).shape == (2, 1, 32, 32)
    with pytest.raises(ExportError, match=r"^No signature\.json in "):
        load_backend(tmp_path / "missing", "onnx")
