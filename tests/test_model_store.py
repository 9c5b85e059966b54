"""The served versions: TF Serving's policies, new versions loaded beside the old and swapped by reference."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import torch

from gans.errors import UserError
from gans.export import export_generator
from pipeline.serving.model_store import ModelStore, UnknownVersion, Watcher, versions_on_disk, wanted_versions
from tests.helpers import tiny_generators


@pytest.fixture(scope="module")
def generators(tmp_path_factory):
    """Two tiny generators with different weights, and their config."""
    return tiny_generators(tmp_path_factory.mktemp("store"), steps=1)


def _export(generators, cfg, root, index, version):
    return export_generator(generators[index], cfg=cfg, root=root, version=str(version))


def test_wanted_versions_follow_tf_servings_policies():
    assert wanted_versions([1, 2, 5], "latest") == [5]
    assert wanted_versions([1, 2, 5], "all") == [1, 2, 5]
    assert wanted_versions([1, 2, 5], "specific", (2, 7)) == [2]
    assert wanted_versions([], "latest") == []
    with pytest.raises(UserError, match="Unknown version policy 'newest'; choose one of latest, all, specific."):
        wanted_versions([1], "newest")


def test_only_whole_integer_versions_count(tmp_path, generators):
    _export(*generators, tmp_path, 0, 3)
    (tmp_path / "10").mkdir()  # no signature yet: not a version
    (tmp_path / "v2").mkdir()
    assert versions_on_disk(tmp_path) == [3]
    assert versions_on_disk(tmp_path / "missing") == []


@pytest.mark.parametrize("backend", ["onnx", "torchscript"])
def test_latest_swaps_in_a_new_version_and_drops_the_old(tmp_path, generators, backend):
    gens, cfg = generators
    _export(gens, cfg, tmp_path, 0, 1)
    store = ModelStore(tmp_path, "latest", backend=backend)
    assert store.refresh() and list(store.served) == [1]
    old = store.get()
    z = torch.randn(3, cfg.model.z_dim)

    _export(gens, cfg, tmp_path, 1, 2)
    assert store.refresh() and list(store.served) == [2] and store.swaps == 2
    new = store.get()
    with torch.no_grad():
        assert np.allclose(new.generate(z.numpy()), gens[1](z).numpy(), atol=1e-5)
        # A request that took the old version before the swap still completes with it.
        assert np.allclose(old.generate(z.numpy()), gens[0](z).numpy(), atol=1e-5)
    assert not store.refresh()  # nothing new: no swap
    with pytest.raises(UnknownVersion, match=r"Version 1 is not served \(policy latest serves 2\)\."):
        store.get(1)


def test_all_and_specific_policies_serve_several_versions(tmp_path, generators):
    for version in (1, 2, 3):
        _export(*generators, tmp_path, version % 2, version)
    everything = ModelStore(tmp_path, "all", backend="torchscript")
    everything.refresh()
    assert list(everything.served) == [1, 2, 3] and everything.get().version == 3
    assert [row["version"] for row in everything.status()] == ["3", "2", "1"]
    chosen = ModelStore(tmp_path, "specific", (1, 3), backend="torchscript")
    chosen.refresh()
    assert list(chosen.served) == [1, 3] and chosen.get(1).version == 1


def test_a_broken_new_version_leaves_the_served_one_in_place(tmp_path, generators):
    _export(*generators, tmp_path, 0, 1)
    store = ModelStore(tmp_path, "latest", backend="onnx")
    store.refresh()
    broken = tmp_path / "2"
    shutil.copytree(tmp_path / "1", broken)
    (broken / "generator.onnx").write_bytes(b"not an onnx model")
    assert not store.refresh()
    assert list(store.served) == [1]
    rows = {row["version"]: row for row in store.status()}
    assert rows["1"]["state"] == "AVAILABLE"
    assert rows["2"]["state"] == "END" and rows["2"]["status"]["error_message"]
    assert not store.refresh()  # unchanged files: not loaded again
    shutil.copy(tmp_path / "1" / "generator.onnx", broken / "generator.onnx")  # e.g. `dvc checkout` finishing
    assert store.refresh() and list(store.served) == [2]
    assert [row["state"] for row in store.status()] == ["AVAILABLE"]


def test_the_watcher_picks_up_an_export(tmp_path, generators):
    _export(*generators, tmp_path, 0, 1)
    store = ModelStore(tmp_path, "latest", backend="torchscript")
    store.refresh()
    watcher = Watcher(store, interval_s=0.05).start()
    try:
        _export(*generators, tmp_path, 1, 2)
        for _ in range(200):
            if list(store.served) == [2]:
                break
            time.sleep(0.05)
        assert list(store.served) == [2]
    finally:
        watcher.stop()


def test_bad_settings_are_refused_in_one_sentence(tmp_path):
    with pytest.raises(UserError, match="The 'specific' version policy needs the versions to serve"):
        ModelStore(tmp_path, "specific")
    with pytest.raises(UserError, match="Unknown backend 'tf'; choose one of onnx, torchscript."):
        ModelStore(tmp_path, backend="tf")
    assert versions_on_disk(tmp_path) == []
    (tmp_path / "²").mkdir()  # a digit to str.isdigit(), not to int()
    (tmp_path / "²" / "signature.json").write_text("{}")
    assert versions_on_disk(tmp_path) == []
    with pytest.raises(UnknownVersion, match="No version is loaded"):
        ModelStore(tmp_path).get()
