"""The layers stay apart: gans/ never pulls in Ray or DVC, training never pulls in data preparation, and a
stage loads heavy libraries only when it uses them."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import gans


def _modules_after(*statements: str) -> list[set[str]]:
    """Per statement, the top-level and dotted module names in sys.modules after running it in a fresh
    interpreter (the interpreters run side by side)."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[1],
        )
        for statement in statements
    ]
    loaded = []
    for child in children:
        out, err = child.communicate()
        assert child.returncode == 0, err
        loaded.append(set(out.split()))
    return loaded


def test_gans_never_imports_ray_or_dvc():
    modules = [m.name for m in pkgutil.walk_packages(gans.__path__, "gans.")]
    # Every source file of the package is among the modules imported below.
    files = {
        ".".join(p.relative_to(Path(gans.__file__).parents[1]).with_suffix("").parts).removesuffix(".__init__")
        for p in Path(gans.__file__).parent.rglob("*.py")
    }
    assert files - {"gans"} == set(modules)
    (loaded,) = _modules_after(f"import importlib\nfor name in {modules!r}: importlib.import_module(name)")
    assert sorted(m for m in loaded if m.split(".")[0] in ("ray", "dvc", "dvclive")) == []


def test_the_training_loop_does_not_import_data_preparation():
    (loaded,) = _modules_after("import gans.loop")
    assert sorted(m for m in loaded if m.startswith(("gans.prepare", "facenet_pytorch"))) == []


def test_stages_load_torch_fidelity_and_ray_tune_only_when_they_use_them(tmp_path):
    # The train stage and its workers import torch-fidelity where they score the in-training FID
    # (pipeline.worker), the sweep stage Ray Tune and its trials where it runs (pipeline.sweep.search); what
    # `make run` prints last reads file names, not the evaluate stage.
    (tmp_path / "params.yaml").write_text("sweep: {enabled: false}\n")
    without, disabled_sweep, *scoring = _modules_after(
        "import pipeline.prepare, pipeline.export, pipeline.params, pipeline.train, pipeline.worker, pipeline.sweep, "
        "pipeline.summary",
        f"import os\nfrom pipeline import params, sweep\nos.chdir({str(tmp_path)!r})\nsweep.run(params.load_params())",
        "import pipeline.evaluate",
        "import pipeline.reference",
    )
    assert "torch_fidelity" not in without and "gans.metrics" not in without and "ray.tune" not in without
    assert (tmp_path / "sweep" / "best.yaml").is_file()  # the disabled stage ran, without any of these:
    assert sorted(m for m in disabled_sweep if m.split(".")[0] in ("ray", "torch_fidelity", "torchvision")) == []
    assert all("torch_fidelity" in loaded for loaded in scoring)
