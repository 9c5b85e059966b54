import pytest
import torch

from gans.config import GANConfig
from gans.models import build_models


@pytest.mark.parametrize("name", ["mlp", "dcgan"])
@pytest.mark.parametrize("resolution, channels", [(32, 1), (32, 3), (64, 3)])
def test_output_shapes_and_range(name, resolution, channels):
    cfg = GANConfig.from_dict(
        {
            "model": {"name": name, "z_dim": 16, "g_width": 8, "d_width": 8},
            "data": {"resolution": resolution, "channels": channels},
        }
    )
    G, D = build_models(cfg)
    images = G(torch.randn(5, 16))
    assert images.shape == (5, channels, resolution, resolution)
    assert images.min() >= -1 and images.max() <= 1
    logits = D(images)
    assert logits.shape == (5,)


def test_dcgan_layer_plan():
    cfg = GANConfig.from_dict({"model": {"g_width": 16, "d_width": 16}, "data": {"resolution": 64, "channels": 3}})
    G, D = build_models(cfg)
    transposed = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [m.out_channels for m in transposed] == [64, 32, 16, 3]  # 4→8→16→32→64
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.out_channels for m in convs] == [16, 32, 64, 128, 1]
    first_block = list(D.body)[:2]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in first_block)  # no BN on D's first layer
    assert isinstance(list(D.body)[1], torch.nn.LeakyReLU) and list(D.body)[1].negative_slope == 0.2


@pytest.mark.parametrize("name", ["mlp", "dcgan"])
def test_init_statistics(name):
    torch.manual_seed(0)
    cfg = GANConfig.from_dict({"model": {"name": name, "g_width": 64, "d_width": 64}})
    for net in build_models(cfg):
        for module in net.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                assert abs(module.weight.mean().item()) < 0.005
                assert module.weight.std().item() == pytest.approx(0.02, rel=0.15)
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                assert module.weight.mean().item() == pytest.approx(1.0, abs=0.02)
