"""GAN architectures, registered by family name.

A family is a class with ``resolutions`` (supported image sides, or None for any) and two static builders,
``generator(cfg)`` and ``discriminator(cfg)`` taking the whole ``GANConfig``. Discriminators return logits
of shape [N].
"""

from gans.config import ConfigError, require_registered
from gans.models import dcgan, mlp, sagan  # noqa: F401  (importing a family registers it)
from gans.models.families import MODELS


def check_model_config(cfg) -> None:
    """``model.name`` is a family that can make ``data.resolution``; ``ConfigError`` naming the key otherwise."""
    require_registered(MODELS, cfg.model.name, "model.name")
    resolutions = MODELS.get(cfg.model.name).resolutions
    if resolutions is not None and cfg.data.resolution not in resolutions:
        raise ConfigError(
            f"data.resolution={cfg.data.resolution} is not supported by model {cfg.model.name!r}; "
            f"allowed values: {', '.join(map(str, resolutions))}."
        )


def build_models(cfg):
    """(G, D) for a ``GANConfig``."""
    check_model_config(cfg)
    family = MODELS.get(cfg.model.name)
    return family.generator(cfg), family.discriminator(cfg)
