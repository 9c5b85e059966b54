"""The registry of architecture families (``model.name``); each family module registers itself here."""

from gans.registry import Registry

MODELS: Registry = Registry("model")
