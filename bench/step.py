"""One GAN training step (one D update + one G update): the project's step against the textbook DCGAN step.

The reference is the PyTorch DCGAN example (Radford et al. 2016; ``pytorch/examples/dcgan``) at 64 px,
batch 64, fp32: G = ConvT(z→8w) → (ConvT ×2, BN, ReLU)* → ConvT → tanh, D = Conv(s2) → (Conv, BN,
LeakyReLU)* → Conv → sigmoid, BCE, Adam(2e-4, 0.5). The project's step is ``gans.step`` on the
project's DCGAN of the same shapes in fp32, contiguous and channels-last (``--all``: with and without bf16
autocast too), and with ``train.amp``/``train.channels_last: auto`` as a run chooses them (``project auto``: a
fresh calibration on this CPU). The last line is auto's speed against the fastest variant measured. The variants run in one process, interleaved round by round (so a noisy
neighbour slows all alike); each is printed as images/s and as the ratio of its median round time to the
textbook's.

    python bench/step.py                        # DCGAN-64, batch 64: the textbook's shapes
    python bench/step.py --preset default --all # params.yaml's shapes (32 px, width 32, batch 16, 1 thread)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from torch import nn

from gans import precision
from gans.config import GANConfig
from gans.loop import choose_precision
from gans.step import timing_step

PRESETS = {
    # resolution, channels, z_dim, width, batch, threads
    "dcgan64": dict(resolution=64, channels=3, z_dim=100, width=64, batch=64, threads=2),
    "default": dict(resolution=32, channels=1, z_dim=64, width=32, batch=16, threads=1),
}


class TextbookGenerator(nn.Module):
    def __init__(self, z_dim: int, width: int, channels: int, resolution: int) -> None:
        super().__init__()
        levels = resolution.bit_length() - 3  # 64 px: 4 ConvT after the first
        top = width * 2 ** (levels - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, top, 4, 1, 0, bias=False),
            nn.BatchNorm2d(top),
            nn.ReLU(True),
        ]
        for level in range(levels - 1):
            c_in, c_out = top // 2**level, top // 2 ** (level + 1)
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z[:, :, None, None])


class TextbookDiscriminator(nn.Module):
    def __init__(self, width: int, channels: int, resolution: int) -> None:
        super().__init__()
        levels = resolution.bit_length() - 3
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for level in range(levels - 1):
            c_in, c_out = width * 2**level, width * 2 ** (level + 1)
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(width * 2 ** (levels - 1), 1, 4, 1, 0, bias=False), nn.Sigmoid()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1)


def textbook_step(shape: dict, device: torch.device):
    """The example's training step, fp32 and contiguous, as a zero-argument function."""
    G = TextbookGenerator(shape["z_dim"], shape["width"], shape["channels"], shape["resolution"]).to(device)
    D = TextbookDiscriminator(shape["width"], shape["channels"], shape["resolution"]).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    criterion = nn.BCELoss()
    batch = shape["batch"]
    real = torch.rand(batch, shape["channels"], shape["resolution"], shape["resolution"], device=device) * 2 - 1
    ones, zeros = torch.ones(batch, device=device), torch.zeros(batch, device=device)

    def step() -> None:
        # Update D: real → 1, fake → 0.
        D.zero_grad()
        errD_real = criterion(D(real), ones)
        errD_real.backward()
        fake = G(torch.randn(batch, shape["z_dim"], device=device))
        errD_fake = criterion(D(fake.detach()), zeros)
        errD_fake.backward()
        opt_d.step()
        # Update G: fake → 1 through the updated D.
        G.zero_grad()
        criterion(D(fake), ones).backward()
        opt_g.step()

    return step


def project_config(shape: dict, amp="auto", channels_last="auto") -> GANConfig:
    """The project's DCGAN at the textbook's shapes (BCE without smoothing, no augmentation)."""
    return GANConfig.from_dict(
        {
            "data": {"resolution": shape["resolution"], "channels": shape["channels"]},
            "model": {"name": "dcgan", "z_dim": shape["z_dim"], "g_width": shape["width"], "d_width": shape["width"]},
            "loss": {"name": "bce", "label_smoothing": 0.0},
            "train": {"amp": amp, "channels_last": channels_last},
            "augment": {"policy": []},
        }
    )


def project_step(shape: dict, device: torch.device, amp: bool, channels_last: bool):
    """``gans.step``'s D and G updates on the project's DCGAN of the same shapes, as a zero-argument function;
    autocast to the device's dtype (``gans.precision.autocast_dtype``: bf16, or fp16 on a GPU without it)."""
    dtype = precision.autocast_torch_dtype(amp, precision.autocast_dtype(device))
    return timing_step(project_config(shape, amp, channels_last), device, shape["batch"], amp, channels_last, dtype)


def auto_step(shape: dict, device: torch.device):
    """The step with ``train.amp``/``channels_last: auto``: calibrated here (a fresh cache), as a run would."""
    with tempfile.TemporaryDirectory() as cache:
        os.environ[precision.CACHE_ENV] = cache
        start = time.perf_counter()
        decision = choose_precision(project_config(shape), device, shape["batch"])
        print(f"auto: {decision.sentence()} — calibrated in {time.perf_counter() - start:.1f} s")
        del os.environ[precision.CACHE_ENV]
    return project_step(shape, device, decision.amp, decision.channels_last)


def _timed(step, steps: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="dcgan64")
    parser.add_argument("--steps", type=int, default=5, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the preset's)")
    parser.add_argument("--all", action="store_true", help="every combination of amp and channels_last")
    args = parser.parse_args()

    shape = PRESETS[args.preset]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(args.threads or shape["threads"])
    torch.manual_seed(0)
    variants = {"textbook fp32": textbook_step(shape, device)}
    combinations = (
        [(a, c) for a in (False, True) for c in (False, True)] if args.all else [(False, False), (False, True)]
    )
    for amp, channels_last in combinations:
        name = f"project {'amp' if amp else 'fp32'}{' + channels_last' if channels_last else ''}"
        variants[name] = project_step(shape, device, amp, channels_last)
    variants["project auto"] = auto_step(shape, device)
    for step in variants.values():  # warm-up: allocator, oneDNN primitive caches
        _timed(step, 2, device)

    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            times[name].append(_timed(step, args.steps, device))

    amp_dtype = precision.autocast_dtype(device)
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    print(
        f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), threads {threads}, "
        f"amp = {amp_dtype} autocast; preset {args.preset}: {shape}; "
        f"{args.rounds} rounds × {args.steps} steps, median per variant"
    )
    reference = statistics.median(times["textbook fp32"])
    print(f"{'variant':<32} {'img/s':>8} {'× textbook':>11}")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:<32} {shape['batch'] * args.steps / median:8.1f} {reference / median:11.2f}")
    fastest = min(statistics.median(samples) for name, samples in times.items() if name != "project auto")
    print(f"auto against the fastest variant measured: ×{fastest / statistics.median(times['project auto']):.2f}")


if __name__ == "__main__":
    main()
