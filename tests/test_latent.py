"""Latent-space tools: interpolation paths, vector arithmetic, the labelled grid and ``python -m pipeline.tools.latent``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gans import checkpoint
from gans.config import GANConfig
from gans.export import export_generator
from gans.latent import LatentError, arithmetic_latents, interpolation_latents, lerp, slerp
from gans.loop import fit
from gans.models import build_models
from gans.plots import labelled_grid_title_band, save_labelled_grid
from pipeline.tools import latent as latent_cli
from tests.helpers import tiny_config

REPO = Path(__file__).resolve().parents[1]
TINY_MODELS = {
    "mlp-16": {
        "data": {"resolution": 16, "channels": 1},
        "model": {"name": "mlp", "z_dim": 8, "g_width": 16, "d_width": 16},
    },
    "dcgan-32": {
        "data": {"resolution": 32, "channels": 3},
        "model": {"name": "dcgan", "z_dim": 8, "g_width": 8, "d_width": 8},
    },
}


def tiny_generator(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    generator, _ = build_models(GANConfig.from_dict(TINY_MODELS[name]))
    return generator.eval()


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


@pytest.mark.parametrize("mode", ["lerp", "slerp"])
@pytest.mark.parametrize("model", sorted(TINY_MODELS))
def test_each_row_starts_and_ends_at_the_generator_images_of_its_end_latents(model, mode):
    generator = tiny_generator(model)
    starts, ends = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(1))
    latents = interpolation_latents(starts, ends, steps=5, mode=mode)
    assert latents.shape == (3 * 5, 8)
    walks = latents.view(3, 5, 8)
    assert torch.equal(walks[:, 0], starts) and torch.equal(walks[:, -1], ends)
    with torch.no_grad():
        images = generator(latents).view(3, 5, *generator(starts).shape[1:])
        torch.testing.assert_close(images[:, 0], generator(starts), atol=1e-6, rtol=0)
        torch.testing.assert_close(images[:, -1], generator(ends), atol=1e-6, rtol=0)
    assert not torch.equal(images[:, 1], images[:, 0])  # the middle of a walk is somewhere else


def test_slerp_keeps_the_norm_of_equal_norm_ends_and_moves_along_the_great_circle():
    z0, z1 = torch.randn(2, 64, generator=torch.Generator().manual_seed(2))
    z1 = z1 * (z0.norm() / z1.norm())
    t = torch.linspace(0, 1, 11)[:, None]
    path = slerp(z0, z1, t)  # [11, 64]
    torch.testing.assert_close(path.norm(dim=1), z0.norm().expand(11), atol=1e-5, rtol=0)
    # The angle from z0 grows linearly to the angle between the ends: a great circle, at constant speed.
    omega = torch.arccos(torch.dot(z0, z1) / (z0.norm() * z1.norm()))
    angles = torch.arccos((path @ z0 / (path.norm(dim=1) * z0.norm())).clamp(-1, 1))
    torch.testing.assert_close(angles, t[:, 0] * omega, atol=1e-3, rtol=0)
    # For equal norms it is the textbook formula.
    textbook = (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)
    torch.testing.assert_close(path, textbook, atol=1e-5, rtol=0)


def test_slerp_norm_goes_linearly_between_unequal_norms():
    z0, z1 = torch.randn(2, 64, generator=torch.Generator().manual_seed(3))
    z1 = 3 * z1
    t = torch.linspace(0, 1, 11)
    norms = slerp(z0, z1, t[:, None]).norm(dim=1)
    torch.testing.assert_close(norms, (1 - t) * z0.norm() + t * z1.norm(), atol=1e-5, rtol=0)
    assert bool((norms.diff() > 0).all())


def test_lerp_halfway_is_the_mean_and_its_ends_are_exact():
    z0, z1 = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(lerp(z0, z1, 0.5), (z0 + z1) / 2, atol=1e-6, rtol=0)
    assert torch.equal(lerp(z0, z1, 0.0), z0) and torch.equal(lerp(z0, z1, 1.0), z1)


@pytest.mark.parametrize("offset", [0.0, 1e-9, 1e-6])
def test_slerp_of_near_identical_latents_has_no_nan(offset):
    z0 = torch.randn(4, 32, generator=torch.Generator().manual_seed(5))
    z1 = z0 + offset * torch.randn(4, 32, generator=torch.Generator().manual_seed(6))
    t = torch.linspace(0, 1, 7)[:, None, None]
    path = slerp(z0, z1, t)
    assert torch.isfinite(path).all()
    torch.testing.assert_close(path, z0.expand_as(path), atol=1e-5, rtol=0)


def test_slerp_of_opposite_latents_has_no_nan():
    z0 = torch.randn(32, generator=torch.Generator().manual_seed(7))
    assert torch.isfinite(slerp(z0, -z0, torch.linspace(0, 1, 5)[:, None])).all()


def test_an_unknown_interpolation_mode_or_a_single_step_is_refused():
    z = torch.zeros(2, 8)
    with pytest.raises(Exception, match="Unknown interpolation mode 'cubic'; valid names are: lerp, slerp."):
        interpolation_latents(z, z, 4, "cubic")
    with pytest.raises(LatentError, match="at least 2 steps"):
        interpolation_latents(z, z, 1, "lerp")


def test_the_arithmetic_is_mean_a_minus_mean_b_plus_mean_c():
    fixed_z = torch.randn(10, 8, generator=torch.Generator().manual_seed(8))
    arithmetic = arithmetic_latents(fixed_z, {"a": [0, 5, 9], "b": [1, 2], "c": [3]})
    expected = (fixed_z[0] + fixed_z[5] + fixed_z[9]) / 3 - (fixed_z[1] + fixed_z[2]) / 2 + fixed_z[3]
    torch.testing.assert_close(arithmetic.result, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(arithmetic.means["b"], (fixed_z[1] + fixed_z[2]) / 2)


def test_the_arithmetic_grid_holds_members_means_and_result_in_place():
    fixed_z = torch.randn(10, 8, generator=torch.Generator().manual_seed(9))
    arithmetic = arithmetic_latents(fixed_z, {"a": [0, 5, 9], "b": [1, 2], "c": [3]})
    tiles = arithmetic.tiles()
    assert tiles.shape == (3 + 2 + 1 + 3 + 1, 8)  # members, one mean per group, the result
    torch.testing.assert_close(tiles[3], arithmetic.means["a"])
    assert torch.equal(tiles[-1], arithmetic.result) and torch.equal(tiles[4], fixed_z[1])
    images = torch.arange(len(tiles), dtype=torch.float32)[:, None, None, None].expand(-1, 1, 2, 2)
    rows = arithmetic.rows(images)
    assert [label for label, _ in rows] == ["A: 0 5 9", "B: 1 2", "C: 3", "A − B + C"]
    assert all(len(cells) == arithmetic.columns == 4 for _, cells in rows)
    shown = [[None if cell is None else int(cell[0, 0, 0]) for cell in cells] for _, cells in rows]
    assert shown == [[0, 1, 2, 3], [4, 5, None, 6], [7, None, None, 8], [None, None, None, 9]]


@pytest.mark.parametrize(
    "groups, message",
    [
        ({"a": [0], "b": [], "c": [1]}, "Latent group B is empty; give it at least one index of the 10 fixed latents."),
        (
            {"a": [0, 10], "b": [1], "c": [2]},
            "Latent group A holds index 10, outside the 10 fixed latents (valid indices: 0–9).",
        ),
        (
            {"a": [0], "b": [1], "c": [-1]},
            "Latent group C holds index -1, outside the 10 fixed latents (valid indices: 0–9).",
        ),
    ],
)
def test_bad_groups_are_one_sentence_errors(groups, message):
    with pytest.raises(LatentError) as error:
        arithmetic_latents(torch.zeros(10, 8), groups)
    assert str(error.value) == message


def test_the_labelled_grid_draws_each_tile_pixel_for_pixel_where_it_belongs(tmp_path):
    colours = torch.linspace(-1, 1, 5)
    tile = lambda value: torch.full((1, 4, 4), float(value))  # noqa: E731
    rows = [
        ("first", [tile(colours[0]), None, tile(colours[1])]),
        ("second row", [tile(colours[2])]),
        ("", [tile(colours[3]), tile(colours[4])]),
    ]
    path = save_labelled_grid(rows, tmp_path / "grid.png", column_titles=["x", "y", "z"], upscale=3, padding=2)
    band, side = labelled_grid_title_band(), 4 * 3
    canvas_w, canvas_h = 3 * (side + 2) + 2, 3 * (side + 2) + 2
    width, height = png_size(path)
    assert height == band + canvas_h and width > canvas_w  # the labels take a left margin
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.int16)[band:, width - canvas_w :]
    expected = np.full((canvas_h, canvas_w), 255, dtype=np.int16)  # padding and empty cells are white
    for r, (_, cells) in enumerate(rows):
        for c, cell in enumerate(cells):
            if cell is not None:
                top, left = 2 + r * (side + 2), 2 + c * (side + 2)
                expected[top : top + side, left : left + side] = round((float(cell[0, 0, 0]) + 1) / 2 * 255)
    assert np.abs(pixels - expected).max() <= 1
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # written atomically: no temp file left


@pytest.fixture
def trained_checkpoint(tmp_path, tiny_dataset) -> tuple[Path, dict]:
    """A short real training run's checkpoint (32 px DCGAN, the default 64 fixed latents)."""
    cfg = tiny_config(train={"steps": 2, "n_fixed": 64})
    state = fit(cfg, tiny_dataset, work_dir=tmp_path / "work")
    return checkpoint.save(state, tmp_path / "train" / checkpoint.FILENAME), state


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.tools.latent", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_the_cli_writes_three_grids_of_the_expected_size(trained_checkpoint, tmp_path):
    path, _ = trained_checkpoint
    out = tmp_path / "latent"
    result = run_cli(
        "--checkpoint",
        str(path),
        "--out",
        str(out),
        "--rows",
        "2",
        "--steps",
        "3",
        "--a",
        "0",
        "5",
        "9",
        "--b",
        "1",
        "2",
        "--c",
        "3",
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "arithmetic.png",
        "interpolation_lerp.png",
        "interpolation_slerp.png",
    ]
    band, cell = labelled_grid_title_band(), 32 * 2 + 2  # 32 px tiles upscaled twice, 2 px padding
    for mode in ("lerp", "slerp"):
        assert png_size(out / f"interpolation_{mode}.png") == (
            3 * cell + 2,
            band + 2 * cell + 2,
        )  # no labels: no margin
        assert f"wrote {out / f'interpolation_{mode}.png'}" in result.stdout
    width, height = png_size(out / "arithmetic.png")
    assert height == band + 4 * cell + 2 and width > 4 * cell + 2  # rows A, B, C, result; 3 members + the mean


def test_the_cli_refuses_a_bad_index_in_one_sentence_and_writes_nothing(trained_checkpoint, tmp_path):
    path, _ = trained_checkpoint
    out = tmp_path / "latent"
    result = run_cli("--checkpoint", str(path), "--out", str(out), "--a", "0", "64")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "[latent] error: Latent group A holds index 64, outside the 64 fixed latents (valid indices: 0–63)."
    )
    assert not out.exists()


def test_an_exported_model_redraws_the_checkpoints_fixed_latents(trained_checkpoint, tmp_path):
    path, state = trained_checkpoint
    generator = checkpoint.load_generator(checkpoint.load(path))
    version = export_generator(generator, cfg=state["config"], root=tmp_path / "models", version="1")
    from_checkpoint = latent_cli.main(
        ["--checkpoint", str(path), "--out", str(tmp_path / "a"), "--rows", "1", "--steps", "2"]
    )
    from_model = latent_cli.main(
        [
            "--model",
            str(version / "generator.pt"),
            "--out",
            str(tmp_path / "b"),
            "--rows",
            "1",
            "--steps",
            "2",
            "--train-seed",
            str(state["config"].train.seed),
        ]
    )
    assert [p.name for p in from_checkpoint] == [p.name for p in from_model]
    # The images of a 2-step generator are nearly flat grey, so compare what drew them: latents and outputs.
    model, fixed_z, _ = latent_cli.load_source(
        latent_cli.parse_args(["--model", str(version), "--train-seed", str(state["config"].train.seed)])
    )
    assert torch.equal(fixed_z, state["fixed_z"])
    with torch.no_grad():
        torch.testing.assert_close(model(fixed_z), generator(state["fixed_z"]), atol=1e-5, rtol=0)
    _, other_z, _ = latent_cli.load_source(latent_cli.parse_args(["--model", str(version), "--train-seed", "1"]))
    assert not torch.equal(other_z, fixed_z)
    for a, b in zip(from_checkpoint, from_model):
        pixels_a, pixels_b = (np.asarray(Image.open(p), dtype=np.int16) for p in (a, b))
        assert pixels_a.shape == pixels_b.shape
        assert np.abs(pixels_a - pixels_b).max() <= 1  # same latents, same weights (TorchScript within 1e-5)
    assert png_size(from_model[0])[0] == 2 * (32 * 2 + 2) + 2
