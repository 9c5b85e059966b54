"""The GAN zoo, each feature tested by what it does: SAGAN, spectral norm, losses, WGAN-GP, n_critic."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gans import losses
from gans.config import GANConfig, LossConfig
from gans.data import PreparedDataset, write_prepared
from gans.loop import fit
from gans.models import MODELS, build_models
from gans.models.layers import SelfAttention
from tests.helpers import FIXED_PRECISION


def _effective_matrix(layer: torch.nn.Module) -> torch.Tensor:
    """The normalised weight as the matrix whose top singular value spectral norm controls."""
    weight = layer.weight  # parametrized: W / σ̂
    dim = 1 if isinstance(layer, torch.nn.ConvTranspose2d) else 0
    return weight.transpose(0, dim).flatten(1) if dim else weight.flatten(1)


def test_spectral_norm_bounds_every_sagan_layer_at_one():
    torch.manual_seed(0)
    cfg = GANConfig.from_dict({"model": {"name": "sagan", "g_width": 16, "d_width": 16}, "data": {"resolution": 32}})
    G, D = build_models(cfg)
    z = torch.randn(8, cfg.model.z_dim)
    with torch.no_grad():
        for _ in range(30):  # each training-mode forward runs one power iteration
            D(G(z))
    G.eval(), D.eval()
    checked = 0
    for net in (G, D):
        for layer in net.modules():
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                assert hasattr(layer, "parametrizations"), f"{layer} is not spectrally normalised"
                sigma = torch.linalg.svdvals(_effective_matrix(layer).detach())[0].item()
                assert sigma == pytest.approx(1.0, abs=0.05), f"{layer}: σ = {sigma:.3f}"
                checked += 1
    assert checked >= 14  # dense, convs, transposed convs and the 1×1 attention convs of both nets


def test_self_attention_starts_as_identity_and_learns_gamma():
    torch.manual_seed(0)
    block = SelfAttention(16)
    x = torch.randn(2, 16, 8, 8)
    assert block.gamma.item() == 0.0
    y = block(x)
    assert y.shape == x.shape
    assert torch.equal(y, x)  # γ = 0: purely local
    (y * torch.randn_like(y)).sum().backward()
    assert block.gamma.grad is not None and block.gamma.grad.abs().item() > 0
    beta = block.attention(x)
    assert beta.shape == (2, 64, 64)
    assert torch.allclose(beta.sum(dim=-1), torch.ones(2, 64), atol=1e-6)
    with torch.no_grad():
        block.gamma.fill_(0.5)
    assert not torch.allclose(block(x), x)  # non-zero γ mixes in non-local signal


@pytest.mark.parametrize("resolution, expected", [(32, 8), (64, 16), (128, 32)])
def test_attention_sits_at_the_configured_feature_size(resolution, expected):
    cfg = GANConfig.from_dict(
        {"model": {"name": "sagan", "g_width": 4, "d_width": 4}, "data": {"resolution": resolution}}
    )
    assert cfg.attention_res == expected
    G, D = build_models(cfg)
    sides = []
    for net, x in ((G, torch.randn(1, cfg.model.z_dim)), (D, torch.randn(1, 1, resolution, resolution))):
        for block in net.modules():
            if isinstance(block, SelfAttention):
                block.register_forward_hook(lambda module, inputs, output: sides.append(output.shape[-1]))
        net.eval()(x)
    assert sides == [expected, expected]


def test_gradient_penalty_of_a_linear_critic_is_exact():
    """D(x) = w·x + b has ∇D = w everywhere, so the penalty is λ(‖w‖ − 1)² whatever x̂ is."""
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1))
    real, fake = torch.randn(6, 3, 2, 2), torch.randn(6, 3, 2, 2)
    w_norm = critic[1].weight.norm().item()
    penalty = losses.gradient_penalty(lambda x: critic(x).squeeze(1), real, fake, weight=10.0)
    assert penalty.item() == pytest.approx(10.0 * (w_norm - 1.0) ** 2, rel=1e-5)
    penalty.backward()  # create_graph: the penalty trains the critic
    assert critic[1].weight.grad.abs().sum() > 0


def test_r1_penalty_of_a_linear_critic_is_exact_and_zero_for_a_flat_one():
    """D(x) = w·x + b has ∇D = w at every real image, so R1 = γ/2·‖w‖²."""
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1))
    real = torch.randn(6, 3, 2, 2)
    penalty = losses.r1_penalty(lambda x: critic(x).squeeze(1), real, weight=0.5)
    assert penalty.item() == pytest.approx(0.25 * critic[1].weight.norm().item() ** 2, rel=1e-5)
    penalty.backward()
    assert torch.allclose(critic[1].weight.grad, 0.5 * critic[1].weight.detach())  # ∂(γ/2‖w‖²)/∂w = γw
    assert losses.r1_penalty(lambda x: x.sum(dim=(1, 2, 3)) * 0, real, weight=10.0).item() == 0.0


def test_gradient_penalty_is_the_same_under_a_grad_scaler():
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    real, fake = torch.randn(4, 12), torch.randn(4, 12)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    torch.manual_seed(1)
    plain = losses.gradient_penalty(lambda x: critic(x).squeeze(1), real, fake, 10.0)
    torch.manual_seed(1)
    scaled = losses.gradient_penalty(lambda x: critic(x).squeeze(1), real, fake, 10.0, scaler=scaler)
    assert scaled.item() == pytest.approx(plain.item(), rel=1e-5)


def test_hinge_lsgan_and_wasserstein_values_on_hand_computed_logits():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-3.0, 0.0, 1.5])
    # hinge: mean(max(0, 1 − r)) = (0 + 0.5 + 2)/3; mean(max(0, 1 + f)) = (0 + 1 + 2.5)/3
    assert losses.hinge_d_loss(real, fake).item() == pytest.approx(2.5 / 3 + 3.5 / 3)
    assert losses.negated_mean_g_loss(fake).item() == pytest.approx(-(-3.0 + 0.0 + 1.5) / 3)
    # Wasserstein: mean(f) − mean(r) = −0.5 − 0.5
    assert losses.wasserstein_d_loss(real, fake).item() == pytest.approx(-1.0)
    # LSGAN: ½ mean((r − 1)²) + ½ mean(f²) = ½(1 + 0.25 + 4)/3 + ½(9 + 0 + 2.25)/3
    assert losses.least_squares_d_loss(real, fake).item() == pytest.approx(0.5 * 5.25 / 3 + 0.5 * 11.25 / 3)
    assert losses.least_squares_g_loss(fake).item() == pytest.approx(0.5 * (16 + 1 + 0.25) / 3)
    wgan = losses.build_loss(LossConfig(name="wgan-gp", gp_weight=7.0))
    assert wgan.gp_weight == 7.0 and losses.build_loss(LossConfig(name="hinge")).gp_weight == 0.0


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """Random RGB datasets at 32, 64 and 128 px."""
    root = tmp_path_factory.mktemp("zoo")
    rng = np.random.default_rng(0)
    return {
        r: PreparedDataset(write_prepared(root / str(r), rng.integers(0, 256, (8, 3, r, r), dtype=np.uint8), {}))
        for r in (32, 64, 128)
    }


ZOO_TRAIN = {"steps": 3, "batch_size": 2, "log_every": 1, "snapshot_every": 3, "n_fixed": 2, **FIXED_PRECISION}
"""3 steps of 2 images, logged at every step, in float32 (no calibration per combination's shapes)."""

COMBINATIONS = [
    (model, loss, resolution)
    for model in MODELS.names()
    for loss in losses.LOSSES.names()
    for resolution in (32, 64, 128)
]


@pytest.mark.parametrize("model, loss, resolution", COMBINATIONS)
def test_every_combination_trains(model, loss, resolution, datasets, tmp_path):
    cfg = GANConfig.from_dict(
        {
            "data": {"resolution": resolution, "channels": 3},
            "model": {"name": model, "z_dim": 8, "g_width": 4, "d_width": 4},
            "loss": {"name": loss},
            "train": {**ZOO_TRAIN, "n_critic": 1},
        }
    )
    state = fit(cfg, datasets[resolution], work_dir=tmp_path)
    for row in state["history"]:
        assert all(math.isfinite(value) for value in row.values()), row
    torch.manual_seed(cfg.train.seed)  # fit builds its nets right after this same seeding
    G0, D0 = build_models(cfg)
    assert all(torch.equal(G0.state_dict()[k], v) for k, v in state["G_init"].items())  # same starting point
    for name, initial, final in (("G", G0.state_dict(), state["G"]), ("D", D0.state_dict(), state["D"])):
        moved = [k for k in final if final[k].is_floating_point() and not torch.equal(final[k], initial[k])]
        assert moved, f"{name} did not change"
    assert state["opt_d"]["state"] and all(s["step"].item() == 3 for s in state["opt_d"]["state"].values())
    if loss == "wgan-gp":
        assert "gradient_penalty" in state["history"][0]


def test_n_critic_updates_d_exactly_that_many_times_per_g_update(datasets, tmp_path):
    cfg = GANConfig.from_dict(
        {
            "data": {"resolution": 32, "channels": 3},
            "model": {"name": "dcgan", "z_dim": 8, "g_width": 4, "d_width": 4},
            "loss": {"name": "wgan-gp"},
            "train": ZOO_TRAIN,
        }
    )
    assert cfg.n_critic == 5 and cfg.d_norm == "none"  # the WGAN-GP defaults
    state = fit(cfg, datasets[32], work_dir=tmp_path)
    d_steps = {int(s["step"].item()) for s in state["opt_d"]["state"].values()}
    g_steps = {int(s["step"].item()) for s in state["opt_g"]["state"].values()}
    assert (d_steps, g_steps) == ({15}, {3})
    _, D = build_models(cfg)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())  # a critic without BatchNorm


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mixed_precision_and_channels_last_train_on_cuda(datasets, tmp_path):
    cfg = GANConfig.from_dict(
        {
            "data": {"resolution": 64, "channels": 3},
            "model": {"name": "sagan", "z_dim": 16, "g_width": 8, "d_width": 8},
            "loss": {"name": "wgan-gp"},
            "train": {
                "steps": 4,
                "batch_size": 4,
                "log_every": 1,
                "snapshot_every": 4,
                "n_fixed": 2,
                "amp": True,
                "channels_last": True,
            },
        }
    )
    state = fit(cfg, datasets[64], work_dir=tmp_path, device="cuda")
    assert all(math.isfinite(v) for row in state["history"] for v in row.values())
    assert state["precision"]["amp"] and state["precision"]["channels_last"]
    if state["precision"]["dtype"] == "float16":  # loss scaling; bfloat16 (native on Ampere and later) needs none
        assert state["scalers"]["d"]["scale"] > 0 and state["scalers"]["g"]["scale"] > 0
    else:
        assert state["precision"]["dtype"] == "bfloat16" and state["scalers"] == {"d": {}, "g": {}}
