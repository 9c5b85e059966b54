"""Failure modes of GAN training, named from the training history and the samples.

Three modes, as the GAN references describe them:

- ``convergence_failure`` — D wins: D's accuracy on real *and* fake is pinned near 1 over a window of log
  steps while G's loss keeps rising (G gets no useful gradient);
- ``mode_collapse`` — G covers few modes: its samples are much less diverse than the real set (mean
  pairwise Inception-feature distance relative to the real one's), or many are near-duplicates;
- ``divergence`` — a loss or gradient norm became NaN/inf, a gradient norm exploded, or fp16 gradients overflow
  at every loss scale.

D's accuracies are taken about the loss's decision boundary (``gans.losses``: logit 0 for bce and hinge, 0.5
for lsgan; ``gans.step.logit_stats``). A loss without one (wgan-gp) logs accuracies about the midpoint of its
critic's real and fake means, and no ``d_real_sign``; ``convergence_failure`` does not judge such rows: a
Wasserstein critic that separates the batch still gives G useful gradients (that is its point), and G's loss
−E[D(fake)] carries the critic's arbitrary offset, so neither "pinned" nor "rising" means D wins there.
An update that fp16 loss scaling skipped (its gradients overflowed) has no gradient norm in the history
(``amp_skipped_d``/``amp_skipped_g`` count it), so it is not divergence; an inf loss, an inf gradient
norm of an applied update, or a loss scale (``amp_scale_d``/``amp_scale_g``) pushed below 1 by updates that
overflow at every scale, still is.

Each check is a pure function of the loop's ``history`` (one dict per log step: ``step``, losses,
accuracies, gradient norms; ``diversity``/``duplicates`` on scored steps) registered in ``DIAGNOSES``,
and returns a ``Diagnosis`` (name, step range, evidence numbers, a one-line hint) or None. The loop runs
them at every log step (``train.stop_on`` names those that end a run); evaluate runs them on the whole
history and checks collapse again on its own, larger sample.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from gans.config import require_registered
from gans.registry import Registry


@dataclass(frozen=True)
class Diagnosis:
    name: str
    start: int
    """First logged step of the evidence."""
    end: int
    """Last logged step of the evidence."""
    evidence: dict[str, float]
    hint: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self) -> str:
        numbers = ", ".join(f"{key} {value:.3g}" for key, value in self.evidence.items())
        return f"{self.name.replace('_', ' ')} at steps {self.start}–{self.end} ({numbers}): {self.hint}"


Check = Callable[[Sequence[dict]], Optional[Diagnosis]]
DIAGNOSES: Registry[Check] = Registry("diagnosis")

PINNED_ACCURACY = 0.95
"""D accuracy at or above this on both real and fake counts as pinned."""
PINNED_WINDOW = 8
"""Consecutive log steps of pinned accuracy that make a convergence failure."""
EXPLOSION_LIMIT = 1e4
"""A loss or gradient norm this large (in absolute value) has exploded: healthy GAN runs stay below ~100."""
G_LOSS_RISE = 0.2
"""G's loss "keeps rising" when the fitted line over the pinned window rises by this fraction of its start value."""
LOW_DIVERSITY = 0.5
"""Generated samples' mean pairwise feature distance below this fraction of the real set's is a collapse."""
DUPLICATE_FRACTION = 0.5
"""A collapse too when more than this fraction of samples has a near-duplicate among the others."""

MIN_LOSS_SCALE = 1.0
"""A GradScaler halves its scale at each overflowing update (from 2^16); below 1 the gradients overflow fp16 unscaled."""

LOSS_KEYS = ("d_loss", "g_loss", "d_grad_norm", "g_grad_norm")
SCALE_KEYS = ("amp_scale_d", "amp_scale_g")


@DIAGNOSES.register("divergence")
def divergence(history: Sequence[dict]) -> Optional[Diagnosis]:
    """The first log step with a loss or gradient norm that is NaN/inf or ≥ 1e4 in absolute value, or an fp16 loss
    scale below 1."""
    for entry in history:
        broken = [key for key in LOSS_KEYS if key in entry and not math.isfinite(entry[key])]
        if broken:
            return Diagnosis(
                "divergence",
                int(entry["step"]),
                int(history[-1]["step"]),
                {f"{key}_finite": 0.0 for key in broken},
                "a loss became NaN/inf: lower lr_d/lr_g, or use a gradient penalty (wgan-gp, R1)",
            )
        exploded = [key for key in LOSS_KEYS if abs(entry.get(key, 0.0)) >= EXPLOSION_LIMIT]
        if exploded:
            return Diagnosis(
                "divergence",
                int(entry["step"]),
                int(history[-1]["step"]),
                {key: float(entry[key]) for key in exploded},
                "losses or gradients exploded: lower lr_d/lr_g, or use spectral norm or a gradient penalty",
            )
        overflowing = [key for key in SCALE_KEYS if entry.get(key, MIN_LOSS_SCALE) < MIN_LOSS_SCALE]
        if overflowing:
            return Diagnosis(
                "divergence",
                int(entry["step"]),
                int(history[-1]["step"]),
                {key: float(entry[key]) for key in overflowing},
                "fp16 gradients overflow at every loss scale: lower lr_d/lr_g, or train in bf16 or fp32 (train.amp)",
            )
    return None


@DIAGNOSES.register("convergence_failure")
def convergence_failure(history: Sequence[dict]) -> Optional[Diagnosis]:
    """The longest run of ≥ 8 log steps with D accuracy ≥ 0.95 on real and fake while G's loss rises (≥ 20 %).

    Only rows whose accuracies are about a decision boundary count (they carry ``d_real_sign``; not wgan-gp's).
    """
    best: Optional[tuple[int, int]] = None
    start = None
    for index, entry in enumerate([*history, {}]):  # the sentinel closes a run that lasts to the end
        pinned = (
            "d_real_sign" in entry
            and min(entry.get("d_acc_real", 0.0), entry.get("d_acc_fake", 0.0)) >= PINNED_ACCURACY
        )
        if pinned and start is None:
            start = index
        elif not pinned and start is not None:
            if index - start >= PINNED_WINDOW and (best is None or index - start > best[1] - best[0]):
                best = (start, index)
            start = None
    if best is None:
        return None
    window = history[best[0] : best[1]]
    steps = np.array([row["step"] for row in window], dtype=float)
    g_loss = np.array([row["g_loss"] for row in window], dtype=float)
    slope = float(np.polyfit(steps, g_loss, 1)[0]) if len(set(steps)) > 1 else 0.0
    if slope * (steps[-1] - steps[0]) <= G_LOSS_RISE * abs(g_loss[0]):
        return None
    return Diagnosis(
        "convergence_failure",
        int(steps[0]),
        int(steps[-1]),
        {
            "d_acc_real": float(np.mean([row["d_acc_real"] for row in window])),
            "d_acc_fake": float(np.mean([row["d_acc_fake"] for row in window])),
            "d_loss": float(np.mean([row["d_loss"] for row in window])),
            "g_loss_start": float(g_loss[0]),
            "g_loss_end": float(g_loss[-1]),
            "g_loss_rise_per_1k_steps": 1000 * slope,
        },
        "D overpowers G: lower lr_d (TTUR), use label smoothing or augmentation (augment.policy)",
    )


@DIAGNOSES.register("mode_collapse")
def mode_collapse(history: Sequence[dict]) -> Optional[Diagnosis]:
    """The latest scored step's sample diversity (``diversity``, ``duplicates``) is below the collapse bars."""
    scored = [row for row in history if "diversity" in row]
    if not scored:
        return None
    last = scored[-1]
    return collapse_of(
        last["diversity"], last["duplicates"], int(last["step"]), int(last["step"]), g_loss_oscillation(history)
    )


def collapse_of(
    diversity: float, duplicates: float, start: int, end: int, oscillation: Optional[float] = None
) -> Optional[Diagnosis]:
    """A ``mode_collapse`` diagnosis when ``diversity`` < 0.5 or ``duplicates`` > 0.5 (``gans.metrics.sample_diversity``)."""
    if not (diversity < LOW_DIVERSITY or duplicates > DUPLICATE_FRACTION):
        return None
    evidence = {"diversity": float(diversity), "duplicates": float(duplicates)}
    if oscillation is not None:
        evidence["g_loss_oscillation"] = oscillation
    return Diagnosis(
        "mode_collapse",
        start,
        end,
        evidence,
        "samples lack variety: raise lr_g relative to lr_d, use hinge or wgan-gp, or minibatch diversity",
    )


def g_loss_oscillation(history: Sequence[dict]) -> Optional[float]:
    """Std of G's loss changes between log steps over the last quarter of the history (large: oscillating)."""
    late = [row["g_loss"] for row in history[len(history) * 3 // 4 :] if math.isfinite(row.get("g_loss", math.nan))]
    return float(np.std(np.diff(late))) if len(late) >= 3 else None


def check_stop_on(names: Sequence[str]) -> None:
    """Every name in ``train.stop_on`` is a registered diagnosis."""
    for name in names:
        require_registered(DIAGNOSES, name, "train.stop_on")


def diagnose(history: Sequence[dict]) -> list[Diagnosis]:
    """Every registered failure mode found in ``history``, in name order."""
    return [found for name in DIAGNOSES.names() if (found := DIAGNOSES.get(name)(history)) is not None]
