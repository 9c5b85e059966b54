"""Adversarial losses as pure functions of discriminator logits.

Sign convention: every function returns a scalar to *minimise*. ``real`` and ``fake`` are the
discriminator's logits on real and generated samples (shape [N]). Nothing here calls ``backward()``,
touches an optimizer or logs.

A loss family is registered in ``LOSSES`` as a class built from a ``LossConfig`` with
``d_loss(real, fake, generator=None)``, ``g_loss(fake)``, ``gp_weight`` (λ of the gradient
penalty the training step adds; 0 for none) and ``boundary``: the logit that separates "real" from "fake"
for that loss (midway between its targets), or None for a critic whose output has no fixed offset (wgan-gp).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from gans.config import require_registered
from gans.registry import Registry

LOSSES: Registry = Registry("loss")


def bce_d_loss(
    real: torch.Tensor,
    fake: torch.Tensor,
    smoothing: float = 0.0,
    flip: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Discriminator BCE: −log σ(real) − log(1 − σ(fake)), with targets 1 − ``smoothing`` (one-sided).

    ``flip`` (bool, [N]) swaps the targets of those pairs: the real logit is pushed to 0 and the fake logit
    to 1 − smoothing (noisy labels, Salimans et al. 2016).
    """
    real_target = torch.full_like(real, 1.0 - smoothing)
    fake_target = torch.zeros_like(fake)
    if flip is not None:
        real_target, fake_target = (
            torch.where(flip, fake_target, real_target),
            torch.where(flip, real_target, fake_target),
        )
    return F.binary_cross_entropy_with_logits(real, real_target) + F.binary_cross_entropy_with_logits(fake, fake_target)


def bce_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: −log σ(fake) = softplus(−fake)."""
    return F.softplus(-fake).mean()


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss (Lim & Ye 2017; SAGAN): E[max(0, 1 − real)] + E[max(0, 1 + fake)]."""
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def wasserstein_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Critic loss of WGAN: E[D(fake)] − E[D(real)] (the penalty is added separately)."""
    return fake.mean() - real.mean()


def negated_mean_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """Generator loss of hinge and Wasserstein GANs: −E[D(fake)]."""
    return -fake.mean()


def least_squares_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """LSGAN discriminator (Mao et al. 2017, a=0, b=1): ½E[(real − 1)²] + ½E[fake²]."""
    return 0.5 * (real - 1.0).pow(2).mean() + 0.5 * fake.pow(2).mean()


def least_squares_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """LSGAN generator (c=1): ½E[(fake − 1)²]."""
    return 0.5 * (fake - 1.0).pow(2).mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float,
    scaler: Optional[torch.amp.GradScaler] = None,
) -> torch.Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017): λ·E[(‖∇D(x̂)‖₂ − 1)²], x̂ uniform on lines real–fake.

    Under mixed precision pass the step's ``scaler``: the input gradient is taken of the scaled output
    (so it does not underflow) and unscaled before the norm, as the PyTorch AMP recipe prescribes.
    The result stays in the graph (``create_graph``) so the critic is trained on it.
    """
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    mixed = alpha * real.detach() + (1 - alpha) * fake.detach()
    norms = _input_gradient(critic, mixed, scaler).flatten(1).norm(dim=1)
    return weight * (norms - 1.0).pow(2).mean()


def r1_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    weight: float,
    scaler: Optional[torch.amp.GradScaler] = None,
    seen: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """R1 penalty (Mescheder et al. 2018): γ/2·E[‖∇ₓD(x)‖₂²] on real images, pulling D flat where the data is.

    ``seen`` is what D saw when it is not ``real`` itself: a differentiable function of ``real`` (its augmentation,
    ``real`` requiring grad). The penalised function is then x ↦ D(augment(x)) with that very transform, and the
    gradient is taken w.r.t. the un-augmented reals, as in StyleGAN2-ADA and DiffAugment (a cut-out square gets none).
    Stays in the graph, like ``gradient_penalty`` (same ``scaler`` rule).
    """
    grad = _input_gradient(critic, real, scaler) if seen is None else _input_gradient(critic, seen, scaler, wrt=real)
    return 0.5 * weight * grad.flatten(1).pow(2).sum(dim=1).mean()


def _input_gradient(
    critic, inputs: torch.Tensor, scaler: Optional[torch.amp.GradScaler], wrt: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """∂ Σ critic(inputs) / ∂ wrt in float32, with the graph kept; under loss scaling, scaled then unscaled.

    ``wrt`` defaults to ``inputs`` (detached, as a new leaf); otherwise ``inputs`` is a differentiable function of it.
    """
    if wrt is None:
        inputs = wrt = inputs.detach().requires_grad_(True)
    out = critic(inputs).sum()
    if scaler is not None and scaler.is_enabled():
        (grad,) = torch.autograd.grad(scaler.scale(out), wrt, create_graph=True)
        grad = grad / scaler.get_scale()
    else:
        (grad,) = torch.autograd.grad(out, wrt, create_graph=True)
    return grad.float()


class _Loss:
    gp_weight = 0.0
    boundary: Optional[float] = 0.0
    """The decision boundary of D's logits: accuracies and ADA's E[sign] are taken about it (None: there is none)."""
    betas: Optional[tuple[float, float]] = None
    """Adam betas this loss is known to train well with (None: no preference, ``optim`` decides)."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg


@LOSSES.register("hinge")
class HingeLoss(_Loss):
    betas = (0.0, 0.9)  # SAGAN, BigGAN

    def d_loss(self, real, fake, generator=None):
        return hinge_d_loss(real, fake)

    def g_loss(self, fake):
        return negated_mean_g_loss(fake)


@LOSSES.register("wgan-gp")
class WassersteinGPLoss(_Loss):
    betas = (0.0, 0.9)  # Gulrajani et al. 2017
    boundary = None  # E[D(fake)] − E[D(real)] is unchanged by a constant added to D: no logit separates the two

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.gp_weight = cfg.gp_weight

    def d_loss(self, real, fake, generator=None):
        return wasserstein_d_loss(real, fake)

    def g_loss(self, fake):
        return negated_mean_g_loss(fake)


@LOSSES.register("lsgan")
class LeastSquaresLoss(_Loss):
    boundary = 0.5  # midway between the fake target 0 and the real target 1

    def d_loss(self, real, fake, generator=None):
        return least_squares_d_loss(real, fake)

    def g_loss(self, fake):
        return least_squares_g_loss(fake)


@LOSSES.register("bce")
class BCELoss(_Loss):
    """Non-saturating GAN loss with one-sided label smoothing and optional noisy labels."""

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.smoothing = cfg.label_smoothing
        self.flip_prob = cfg.label_flip_prob

    def d_loss(
        self, real: torch.Tensor, fake: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        flip = None
        if self.flip_prob > 0:
            flip = torch.rand(real.shape, generator=generator, device=real.device) < self.flip_prob
        return bce_d_loss(real, fake, self.smoothing, flip)

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return bce_g_loss(fake)


def check_loss_config(cfg) -> None:
    """``loss.name`` is a registered loss; ``ConfigError`` naming the key and the allowed values otherwise."""
    require_registered(LOSSES, cfg.name, "loss.name")


def recommended_betas(name: str) -> Optional[tuple[float, float]]:
    """The Adam betas loss ``name`` is known to train well with, or None when it has no preference."""
    return LOSSES.get(name).betas


def decision_boundary(name: str) -> Optional[float]:
    """The decision boundary of loss ``name``'s logits, or None when it has none (``_Loss.boundary``)."""
    return LOSSES.get(name).boundary


def build_loss(cfg):
    """The loss object for a ``LossConfig``."""
    check_loss_config(cfg)
    return LOSSES.get(cfg.name)(cfg)
