"""gans — a GAN library (models, losses, training loop, metrics, export) that needs no Ray or DVC.

Import submodules directly: ``from gans.loop import fit``; ``from gans.config import GANConfig``.
"""

__version__ = "0.1.0"
