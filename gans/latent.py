"""Walks and sums in a generator's latent space: interpolation grids and vector arithmetic (DCGAN, §6).

Pure torch. ``lerp`` and ``slerp`` are registered by name in ``INTERPOLATIONS``; ``interpolation_latents``
lays out a grid whose rows walk from one latent to another; ``arithmetic_latents`` computes
mean(z[A]) − mean(z[B]) + mean(z[C]) ("smiling woman − neutral woman + neutral man") over indices of a
stored latent set (a checkpoint's ``fixed_z``) and the tiles of the grid that shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

from gans.errors import UserError
from gans.registry import Registry

Weight = Union[float, torch.Tensor]
INTERPOLATIONS: Registry = Registry("interpolation mode")
GROUPS = ("a", "b", "c")
"""The arithmetic's groups, in the order of the sum: A − B + C."""


class LatentError(UserError):
    """Bad latent-tool input: an empty group, an index outside the latent set, too few steps."""


def _as_weight(t: Weight, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(t, dtype=like.dtype, device=like.device)


@INTERPOLATIONS.register("lerp")
def lerp(z0: torch.Tensor, z1: torch.Tensor, t: Weight) -> torch.Tensor:
    """The straight line (1 − t)·z0 + t·z1; ``t`` is a number or a tensor broadcastable against ``z[..., :1]``.

    t = 0 and t = 1 return z0 and z1 exactly (``torch.lerp`` switches side at 0.5).
    """
    return torch.lerp(z0, z1, _as_weight(t, z0))


@INTERPOLATIONS.register("slerp")
def slerp(z0: torch.Tensor, z1: torch.Tensor, t: Weight, eps: float = 1e-7) -> torch.Tensor:
    """Along the great circle from z0's direction to z1's, with the norm going linearly from |z0| to |z1|.

    This is not the textbook formula sin((1 − t)Ω)/sin Ω·z0 + sin(tΩ)/sin Ω·z1, whose norm sags between
    endpoints of unequal norm; for endpoints of equal norm the two agree. The norm rule keeps every point at
    the radius where a Gaussian latent's mass lies (|z| ≈ √z_dim), which the straight line leaves in the
    middle. Where sin Ω < ``eps`` the great circle is numerically undefined and the path falls back to the
    normalised lerp of the two directions, so no NaN appears: near-identical directions then move
    straight, and exactly opposite ones (no unique great circle) pass through the origin at t = 0.5.
    t = 0 and t = 1 return z0 and z1 exactly. ``t`` as in ``lerp``.
    """
    dtype = z0.dtype
    a, b = z0.double(), z1.double()
    w = _as_weight(t, a)
    norm_a, norm_b = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    u_a, u_b = a / norm_a.clamp_min(eps), b / norm_b.clamp_min(eps)
    omega = (u_a * u_b).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0).acos()
    sin_omega = omega.sin()
    parallel = sin_omega < eps
    safe_sin = torch.where(parallel, torch.ones_like(sin_omega), sin_omega)
    circle = (((1 - w) * omega).sin() * u_a + (w * omega).sin() * u_b) / safe_sin
    straight = torch.lerp(u_a, u_b, w)
    direction = torch.where(parallel, straight, circle)
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(eps)
    out = direction * torch.lerp(norm_a, norm_b, w)
    out = torch.where(w == 0, a, torch.where(w == 1, b, out))
    return out.to(dtype)


def interpolation_latents(
    z_starts: torch.Tensor, z_ends: torch.Tensor, steps: int, mode: str = "slerp"
) -> torch.Tensor:
    """[rows·steps, z_dim]: row r walks from ``z_starts[r]`` to ``z_ends[r]`` in ``steps`` even steps (ends included).

    Row-major, so ``torchvision.utils.make_grid(G(z), nrow=steps)`` draws one walk per row.
    """
    if steps < 2:
        raise LatentError(f"An interpolation needs at least 2 steps (its two ends), not {steps}.")
    if z_starts.shape != z_ends.shape or z_starts.dim() != 2:
        raise LatentError(
            f"Interpolation starts {tuple(z_starts.shape)} and ends {tuple(z_ends.shape)} must both be [rows, z_dim]."
        )
    interpolate = INTERPOLATIONS.get(mode)
    t = torch.linspace(0, 1, steps, dtype=z_starts.dtype, device=z_starts.device).view(1, steps, 1)
    walks = interpolate(z_starts[:, None, :], z_ends[:, None, :], t)  # [rows, steps, z_dim]
    return walks.reshape(-1, z_starts.shape[1])


@dataclass(frozen=True)
class Arithmetic:
    """mean(z[A]) − mean(z[B]) + mean(z[C]) over a latent set, with what its grid shows.

    Grid layout (``rows``): one row per group A, B, C holding its members left to right and, in the last
    column, the image of its mean latent G(mean z); then a row with the result A − B + C in that last column.
    """

    indices: dict[str, tuple[int, ...]]
    """Group name (``GROUPS``) → indices into the latent set."""
    members: dict[str, torch.Tensor]
    """Group name → its latents [k, z_dim]."""
    means: dict[str, torch.Tensor]
    """Group name → the mean of its latents [z_dim]."""
    result: torch.Tensor
    """means[a] − means[b] + means[c]  [z_dim]."""

    @property
    def columns(self) -> int:
        """The widest group plus the mean column."""
        return max(len(self.indices[group]) for group in GROUPS) + 1

    def tiles(self) -> torch.Tensor:
        """Every latent the grid draws, [n_a + n_b + n_c + 4, z_dim]: each group's members then its mean, then the result."""
        parts = [torch.cat([self.members[group], self.means[group][None]]) for group in GROUPS]
        return torch.cat([*parts, self.result[None]])

    def rows(self, images: torch.Tensor) -> list[tuple[str, list[Optional[torch.Tensor]]]]:
        """(label, cells) per grid row from ``images`` = G(``tiles()``); a None cell stays empty."""
        if len(images) != len(self.tiles()):
            raise LatentError(
                f"The arithmetic grid has {len(self.tiles())} tiles, but {len(images)} images were given."
            )
        rows, start = [], 0
        for group in GROUPS:
            count = len(self.indices[group])
            members, mean = list(images[start : start + count]), images[start + count]
            label = f"{group.upper()}: {' '.join(map(str, self.indices[group]))}"
            rows.append((label, members + [None] * (self.columns - 1 - count) + [mean]))
            start += count + 1
        rows.append(("A − B + C", [None] * (self.columns - 1) + [images[start]]))
        return rows


def arithmetic_latents(fixed_z: torch.Tensor, groups: dict[str, Sequence[int]]) -> Arithmetic:
    """The vector arithmetic of groups ``a``, ``b``, ``c`` of indices into ``fixed_z`` [N, z_dim].

    Raises ``LatentError`` for a missing or empty group or an index outside 0..N−1 (negative indices included).
    """
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise LatentError(f"Unknown latent group {unknown[0]!r}; the groups are {', '.join(GROUPS)}.")
    count = len(fixed_z)
    indices = {}
    for group in GROUPS:
        chosen = tuple(int(i) for i in groups.get(group) or ())
        if not chosen:
            raise LatentError(
                f"Latent group {group.upper()} is empty; give it at least one index of the {count} fixed latents."
            )
        bad = next((i for i in chosen if not 0 <= i < count), None)
        if bad is not None:
            raise LatentError(
                f"Latent group {group.upper()} holds index {bad}, outside the {count} fixed latents "
                f"(valid indices: 0–{count - 1})."
            )
        indices[group] = chosen
    members = {group: fixed_z[list(chosen)] for group, chosen in indices.items()}
    means = {group: z.mean(dim=0) for group, z in members.items()}
    return Arithmetic(indices, members, means, means["a"] - means["b"] + means["c"])
