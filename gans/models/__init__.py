"""GAN architectures, registered by family name.

A family is a class with ``resolutions`` (supported image sides, or None for any) and two static builders,
``generator(cfg)`` and ``discriminator(cfg)`` taking the whole ``GANConfig``. Discriminators return logits
of shape [N].
"""

from gans.registry import Registry

MODELS: Registry = Registry("model")

from gans.models import dcgan, mlp, sagan  # noqa: E402,F401  (register the families)


def build_models(cfg):
    """(G, D) for a ``GANConfig``."""
    family = MODELS.get(cfg.model.name)
    return family.generator(cfg), family.discriminator(cfg)
