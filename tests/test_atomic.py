"""Atomic writes: the target changes whole on success and stays as it was on failure, with no temp left."""

import pytest

from gans.atomic import atomic_dir, atomic_file


def test_a_file_is_replaced_only_when_the_write_succeeds(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    with atomic_file(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".json" and tmp != target
        tmp.write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("writer failed")
    assert target.read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]


def test_a_directory_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "prepared"
    with atomic_dir(target) as tmp:
        (tmp / "old.txt").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]  # the older directory is gone, not merged
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "partial.txt").write_text("partial")
            raise RuntimeError("writer failed")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]
