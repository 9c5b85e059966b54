"""How far to trust a FID, precision or recall measured on few images: noise, equal-count scores, floors, FID∞.

Pure functions of Inception features (torch tensors or numpy arrays, rows = images); float64 numpy inside
(KID takes the rows as they come).
``reference`` is ``gans.metrics.reference_statistics``'s dict: ``mu``, ``sigma`` (the whole real set's),
``kid_features`` (the whole real set when it has ≤ 10 000 images, else a random subset) and ``n``.

- ``fid_between``: FID between two feature sets, with Tr √(Σ_a Σ_b) as the nuclear norm of a small matrix.
- ``fid_noise``: bootstrap standard deviation of FID, from the features already extracted.
- ``precision_recall_equal``: improved precision/recall (torch-fidelity's) at equal real and generated counts.
- ``kid_of``: torch-fidelity's KID of two feature sets (the one call of it, for ``gans.metrics.kid`` too).
- ``achievable_floor``: the FID and KID of two disjoint halves of the real set: a perfect generator's score
  at those sizes, next to the generated set's score at the same sizes.
- ``fid_infinity``: FID extrapolated to infinitely many generated images (Chong & Forsyth 2020).
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import torch
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric
from torch_fidelity.metric_prc import (
    KEY_METRIC_F_SCORE,
    KEY_METRIC_PRECISION,
    KEY_METRIC_RECALL,
    prc_features_to_metric,
)

from gans.errors import UserError

Features = Union[torch.Tensor, np.ndarray]


class MetricNoiseError(UserError):
    """Feature sets too small or inconsistent for the requested estimate."""


def _rows(features: Features) -> np.ndarray:
    """float64 [N, d] numpy copy-or-view of ``features``."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    rows = np.asarray(features, dtype=np.float64)
    if rows.ndim != 2:
        raise MetricNoiseError(f"Features must be a 2-d array [N, d], got shape {rows.shape}.")
    return rows


def _real_rows(reference: dict[str, Any]) -> np.ndarray:
    """The reference's real feature rows (``kid_features``), float64."""
    return _rows(reference["kid_features"])


def _needs(count: int, least: int, what: str) -> None:
    if count < least:
        raise MetricNoiseError(f"{what} needs at least {least} rows, got {count}.")


def _compressed(centred: np.ndarray) -> np.ndarray:
    """A matrix with the same Gram matrix XᵀX as ``centred`` and at most d rows (its QR factor R when N > d)."""
    if centred.shape[0] <= centred.shape[1]:
        return centred
    return np.linalg.qr(centred, mode="r")


def _nuclear_norm(matrix: np.ndarray) -> float:
    """Sum of the singular values."""
    if matrix.size == 0:
        return 0.0
    return float(np.linalg.svd(matrix, compute_uv=False).sum())


def fid_between(real_features: Features, fake_features: Features) -> float:
    """FID between two feature sets, exact (torch-fidelity's ``fid_statistics_to_metric`` on their statistics).

    With A, B the centred rows (m × d, n × d), Σ_a = AᵀA / (m − 1), Σ_b = BᵀB / (n − 1). The nonzero
    eigenvalues of Σ_a Σ_b are the squared singular values of A Bᵀ / √((m − 1)(n − 1)), so Tr √(Σ_a Σ_b) is
    that m × n matrix's nuclear norm. A set with more rows than d is first replaced by its d × d QR factor.
    """
    real, fake = _rows(real_features), _rows(fake_features)
    _needs(real.shape[0], 2, "FID's real side")
    _needs(fake.shape[0], 2, "FID's generated side")
    m, n = real.shape[0], fake.shape[0]
    mean_a, mean_b = real.mean(axis=0), fake.mean(axis=0)
    a, b = real - mean_a, fake - mean_b
    trace_a, trace_b = np.einsum("ij,ij->", a, a) / (m - 1), np.einsum("ij,ij->", b, b) / (n - 1)
    cross = _compressed(a) @ _compressed(b).T / np.sqrt((m - 1) * (n - 1))
    difference = mean_a - mean_b
    return float(difference @ difference + trace_a + trace_b - 2 * _nuclear_norm(cross))


class _Side:
    """One side's rows, centred on their mean, ready for FIDs of reweighted rows (bootstrap or subsample counts).

    Rows i taken ``counts[i]`` times (Σ counts = N ≥ 2): mean ``mean + shift`` with ``shift = countsᵀ centred / N``,
    scatter ``Σ counts[i] (centred[i] − shift)(centred[i] − shift)ᵀ`` = (N − 1) × their covariance.
    """

    def __init__(self, rows: np.ndarray) -> None:
        self.mean = rows.mean(axis=0)
        self.centred = rows - self.mean
        self.norms = np.einsum("ij,ij->i", self.centred, self.centred)

    def __len__(self) -> int:
        return self.centred.shape[0]

    def shift(self, counts: np.ndarray) -> np.ndarray:
        """Mean of the reweighted rows minus ``self.mean``."""
        return counts @ self.centred / counts.sum()

    def trace(self, counts: np.ndarray, shift: np.ndarray) -> float:
        """Trace of the reweighted rows' covariance."""
        total = counts.sum()
        return float((counts @ self.norms - total * (shift @ shift)) / (total - 1))

    def covariance(self, counts: np.ndarray, shift: np.ndarray) -> np.ndarray:
        """The reweighted rows' covariance, d × d."""
        used = np.flatnonzero(counts)
        rows = self.centred[used]
        scatter = (rows.T * counts[used]) @ rows - counts.sum() * np.outer(shift, shift)
        return scatter / (counts.sum() - 1)


def _centred_weighted(matrix: np.ndarray, row_counts: np.ndarray, col_counts: np.ndarray) -> np.ndarray:
    """``√D_r (I − 1 rᵀ/R) M (I − c 1ᵀ/C) √D_c`` restricted to the rows and columns with nonzero counts.

    For M = X Yᵀ and counts r, c (sums R, C), this is the centred resampled X times the centred resampled Yᵀ,
    with each repeated row kept once and weighted by √count: the same Gram matrices, so the same singular values.
    """
    rows, cols = np.flatnonzero(row_counts), np.flatnonzero(col_counts)
    r, c = row_counts[rows].astype(np.float64), col_counts[cols].astype(np.float64)
    sub = matrix[np.ix_(rows, cols)]
    row_mean = r @ sub / r.sum()  # (1/R) rᵀ M, one value per kept column
    col_mean = sub @ c / c.sum()  # (1/C) M c, one value per kept row
    centred = sub - row_mean[None, :] - col_mean[:, None] + (r @ col_mean) / r.sum()
    return np.sqrt(r)[:, None] * centred * np.sqrt(c)[None, :]


def _trace_sqrt_psd(matrix: np.ndarray) -> float:
    """Σ √λ over the eigenvalues λ of a symmetric positive semi-definite matrix (negatives from rounding → 0)."""
    values = np.linalg.eigvalsh((matrix + matrix.T) / 2)
    return float(np.sqrt(np.clip(values, 0, None)).sum())


def _psd_root(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


class _FixedRealFID:
    """FID of reweighted generated rows against fixed statistics (μ₁, Σ₁).

    n ≤ d: with R the centred generated rows and G = R Σ₁ Rᵀ (n × n, computed once), Tr √(Σ₁ Σ_b) for counts c
    (Σ c = N) is Σ √λ of ``√D_c P G Pᵀ √D_c / (N − 1)`` (P the count-weighted centring): an eigenproblem on the
    rows drawn. n > d: Σ √λ of √Σ₁ Σ_b √Σ₁ (d × d).
    """

    def __init__(self, reference: dict[str, Any], fake: np.ndarray) -> None:
        self.mu = np.asarray(reference["mu"], dtype=np.float64)
        sigma = np.asarray(reference["sigma"], dtype=np.float64)
        self.trace_sigma = float(np.trace(sigma))
        self.fake = _Side(fake)
        small = len(fake) <= sigma.shape[0]
        self.gram = self.fake.centred @ sigma @ self.fake.centred.T if small else None
        self.root = None if small else _psd_root(sigma)

    def _trace_sqrt(self, counts: np.ndarray, shift: np.ndarray) -> float:
        if self.gram is not None:
            return _trace_sqrt_psd(_centred_weighted(self.gram, counts, counts) / (counts.sum() - 1))
        return _trace_sqrt_psd(self.root @ self.fake.covariance(counts, shift) @ self.root)

    def __call__(self, counts: np.ndarray) -> float:
        shift = self.fake.shift(counts)
        difference = self.mu - self.fake.mean - shift
        trace_fake = self.fake.trace(counts, shift)
        return float(difference @ difference + self.trace_sigma + trace_fake - 2 * self._trace_sqrt(counts, shift))


CROSS_ENTRIES = 25_000_000
"""Largest m × n (200 MB of float64) for which ``_ResampledFID`` keeps the real-by-generated cross products."""


class _ResampledFID:
    """FID of reweighted real rows against reweighted generated rows.

    min(m, n) ≤ d and m × n ≤ ``CROSS_ENTRIES``: from the m × n cross products of the centred rows (computed
    once), Tr √(Σ_a Σ_b) the nuclear norm of the reweighted, recentred cross products / √((M − 1)(N − 1)).
    Otherwise Σ √λ of √Σ_a Σ_b √Σ_a (d × d, two eigenproblems per call).
    """

    def __init__(self, real: np.ndarray, fake: np.ndarray) -> None:
        self.real, self.fake = _Side(real), _Side(fake)
        m, n, d = len(real), len(fake), real.shape[1]
        small = min(m, n) <= d and m * n <= CROSS_ENTRIES
        self.cross = self.real.centred @ self.fake.centred.T if small else None

    def _trace_sqrt(self, counts: tuple[np.ndarray, np.ndarray], shifts: tuple[np.ndarray, np.ndarray]) -> float:
        if self.cross is not None:
            scale = np.sqrt((counts[0].sum() - 1) * (counts[1].sum() - 1))
            return _nuclear_norm(_centred_weighted(self.cross, *counts)) / scale
        root = _psd_root(self.real.covariance(counts[0], shifts[0]))
        return _trace_sqrt_psd(root @ self.fake.covariance(counts[1], shifts[1]) @ root)

    def __call__(self, real_counts: np.ndarray, fake_counts: np.ndarray) -> float:
        shifts = self.real.shift(real_counts), self.fake.shift(fake_counts)
        difference = self.real.mean + shifts[0] - self.fake.mean - shifts[1]
        traces = self.real.trace(real_counts, shifts[0]) + self.fake.trace(fake_counts, shifts[1])
        trace_sqrt = self._trace_sqrt((real_counts, fake_counts), shifts)
        return float(difference @ difference + traces - 2 * trace_sqrt)


def _whole_real_set(reference: dict[str, Any]) -> bool:
    """Whether ``kid_features`` holds every real image's features (then the real side can be resampled)."""
    return len(reference["kid_features"]) == int(reference["n"])


def _bootstrap_counts(rng: np.random.Generator, size: int) -> np.ndarray:
    """How many times each of ``size`` rows is drawn by ``size`` draws with replacement."""
    return np.bincount(rng.integers(0, size, size), minlength=size)


def fid_noise(
    reference: dict[str, Any],
    fake_features: Features,
    replicates: int = 200,
    seed: int = 0,
    resample_real: Optional[bool] = None,
) -> dict[str, Any]:
    """Bootstrap standard deviation of ``fid(reference, fake_features)``; no further Inception passes.

    Each replicate draws the generated rows with replacement and, when the real side is resampled, the real
    rows (``kid_features``) too, then recomputes FID; ``fid_std`` is the replicates' standard deviation
    (ddof 1). ``resample_real``: None resamples the real rows when ``kid_features`` is the whole real set
    (``len == n``) and holds the real statistics fixed otherwise; True requires the whole set. Real
    resampled, each replicate is a nuclear norm of an (m × n) matrix; real fixed, an n × n eigenproblem
    (with more rows than d, d × d eigenproblems: seconds per replicate at d = 2048).
    Returns ``fid_std``, ``replicates``, ``resampled`` ("real and generated" or "generated") and ``seed``.
    Replicates are drawn from ``numpy.random.default_rng(seed)``: generated counts, then real counts.

    Conservative at small n: a bootstrap draw holds ~63 % distinct rows, so its FID is noisier than that of n
    fresh images. Measured on 2048-d features of a smooth random map (6 worlds, truth from 20 independent draws),
    real fixed: 1.2–1.8 × the spread over generated draws at 64 generated / 64 real, 0.95–1.2 × at 128 / 100,
    0.8–1.35 × at 500 / 100; real resampled too: 1.05–2.1 × the spread over real and generated draws.
    """
    fake = _rows(fake_features)
    _needs(fake.shape[0], 2, "FID noise's generated side")
    if replicates < 2:
        raise MetricNoiseError(f"FID noise needs at least 2 replicates, got {replicates}.")
    whole = _whole_real_set(reference)
    if resample_real and not whole:
        raise MetricNoiseError(
            f"The real rows cannot be resampled: kid_features holds {len(reference['kid_features'])} "
            f"of the {reference['n']} real images."
        )
    resample = whole if resample_real is None else resample_real
    rng, values = np.random.default_rng(seed), []
    if resample:
        score = _ResampledFID(_real_rows(reference), fake)
        for _ in range(replicates):
            fake_counts = _bootstrap_counts(rng, len(score.fake))
            values.append(score(_bootstrap_counts(rng, len(score.real)), fake_counts))
    else:
        fixed = _FixedRealFID(reference, fake)
        values = [fixed(_bootstrap_counts(rng, len(fixed.fake))) for _ in range(replicates)]
    return {
        "fid_std": float(np.std(values, ddof=1)),
        "replicates": replicates,
        "resampled": "real and generated" if resample else "generated",
        "seed": seed,
    }


def equal_count_subsets(
    fake_count: int, real_count: int, subsets: int = 10, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(generated indices, real indices) per subset: k = min of the counts rows of each set.

    The larger set is subsampled to k rows without replacement (``numpy.random.default_rng(seed)``, one
    ``choice`` per subset), the smaller one is taken whole. Equal counts: a single subset, both sets whole.
    """
    k = min(fake_count, real_count)
    if fake_count == real_count:
        return [(np.arange(k), np.arange(k))]
    rng = np.random.default_rng(seed)
    larger = max(fake_count, real_count)
    draws = [np.sort(rng.choice(larger, k, replace=False)) for _ in range(subsets)]
    if fake_count > real_count:
        return [(draw, np.arange(k)) for draw in draws]
    return [(np.arange(k), draw) for draw in draws]


def precision_recall_of(fake: Features, real: Features, neighborhood: int = 3) -> dict[str, float]:
    """torch-fidelity's improved precision, recall and F-score of two feature sets as given, generated first.

    Precision is the fraction of generated samples inside the real manifold (k-NN balls of the real features),
    recall the fraction of real samples inside the generated one; unequal counts bias them
    (``precision_recall_equal`` takes them at equal counts).
    """
    fake, real = _rows(fake), _rows(real)
    out = prc_features_to_metric(
        torch.from_numpy(fake.astype(np.float32)),
        torch.from_numpy(real.astype(np.float32)),
        prc_neighborhood=neighborhood,
        prc_batch_size=10000,
        save_cpu_ram=False,
        verbose=False,
    )
    return {key: out[name] for key, name in _PRC_KEYS.items()}


_PRC_KEYS = {"precision": KEY_METRIC_PRECISION, "recall": KEY_METRIC_RECALL, "f_score": KEY_METRIC_F_SCORE}


def precision_recall_equal(
    reference: dict[str, Any], fake_features: Features, neighborhood: int = 3, subsets: int = 10, seed: int = 0
) -> dict[str, Any]:
    """Improved precision/recall (Kynkäänniemi et al. 2019, torch-fidelity's) at equal real and generated counts.

    The k-NN radii shrink as a set grows, so unequal counts bias precision against recall. Here both sets have
    k = min(real rows in ``kid_features``, generated rows): ``equal_count_subsets`` subsamples the larger set,
    ``subsets`` times (once when the counts are equal). Returns the means over subsets of ``precision``,
    ``recall`` and ``f_score``, the standard deviations (ddof 0) ``precision_std`` and ``recall_std``,
    ``prc_count`` (k) and ``prc_subsets`` (subsets scored: 1 when the counts are equal).
    """
    fake, real = _rows(fake_features), _real_rows(reference)
    k = min(len(fake), len(real))
    _needs(k, neighborhood + 1, f"Precision/recall with neighborhood {neighborhood}")
    scores = [
        precision_recall_of(fake[fake_rows], real[real_rows], neighborhood)
        for fake_rows, real_rows in equal_count_subsets(len(fake), len(real), subsets, seed)
    ]
    means = {key: float(np.mean([score[key] for score in scores])) for key in _PRC_KEYS}
    return {
        **means,
        "precision_std": float(np.std([score["precision"] for score in scores])),
        "recall_std": float(np.std([score["recall"] for score in scores])),
        "prc_count": k,
        "prc_subsets": len(scores),
    }


def kid_of(fake: Features, real: Features, subsets: int, subset_size: int, seed: int) -> dict[str, Any]:
    """torch-fidelity's KID of generated rows against real rows (generated first, as its API takes them):
    ``kid_mean`` and ``kid_std`` over ``subsets`` subsets of ``kid_subset_size`` = ``subset_size`` capped by
    both counts, drawn with seed ``seed``. The rows keep their dtype."""
    size = min(subset_size, len(fake), len(real))
    out = kid_features_to_metric(
        torch.as_tensor(fake),
        torch.as_tensor(real),
        kid_subsets=subsets,
        kid_subset_size=size,
        rng_seed=seed,
        verbose=False,
    )
    return {
        "kid_mean": float(out[KEY_METRIC_KID_MEAN]),
        "kid_std": float(out[KEY_METRIC_KID_STD]),
        "kid_subset_size": size,
    }


def _kid(fake: np.ndarray, real: np.ndarray, seed: int) -> float:
    """KID's mean over 10 subsets of min(1000, both counts) rows (torch-fidelity's defaults), generated first."""
    return kid_of(fake, real, subsets=10, subset_size=1000, seed=seed)["kid_mean"]


def achievable_floor(
    reference: dict[str, Any], fake_features: Features, splits: int = 10, seed: int = 0
) -> dict[str, Any]:
    """What a generator indistinguishable from the data would score here, next to this one at the same sizes.

    Each split draws (``numpy.random.default_rng(seed)``) two disjoint halves of h = min(m // 2, n) rows of
    the m real rows in ``kid_features`` and h of the n generated rows, without replacement. Returns the means
    over splits and their standard deviations (ddof 1; 0 with one split):
    ``fid_real_halves`` (``fid_between`` half 1 and half 2: the floor), ``fid_generated_vs_half`` (h generated
    rows against half 2), ``kid_real_halves`` and ``kid_generated_vs_half`` (torch-fidelity's KID, subsets of
    min(1000, h) rows, seed ``seed + split``), with ``floor_size`` (h) and ``floor_splits``.
    """
    fake, real = _rows(fake_features), _real_rows(reference)
    h = min(len(real) // 2, len(fake))
    _needs(h, 2, "The achievable floor (each real half and the generated subsample)")
    rng = np.random.default_rng(seed)
    rows: dict[str, list[float]] = {key: [] for key in _FLOOR_KEYS}
    for split in range(splits):
        order = rng.permutation(len(real))
        half_1, half_2 = real[order[:h]], real[order[h : 2 * h]]
        generated = fake[rng.choice(len(fake), h, replace=False)]
        rows["fid_real_halves"].append(fid_between(half_1, half_2))
        rows["fid_generated_vs_half"].append(fid_between(half_2, generated))
        rows["kid_real_halves"].append(_kid(half_1, half_2, seed + split))
        rows["kid_generated_vs_half"].append(_kid(generated, half_2, seed + split))
    out: dict[str, Any] = {}
    for key, values in rows.items():
        out[key] = float(np.mean(values))
        out[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {**out, "floor_size": h, "floor_splits": splits}


_FLOOR_KEYS = ("fid_real_halves", "fid_generated_vs_half", "kid_real_halves", "kid_generated_vs_half")


def fid_infinity_sizes(n: int, points: int = 15) -> np.ndarray:
    """Generated-set sizes from max(50, n // 5) to n (from n // 2 when n < 100), evenly spaced in 1/N, rounded,
    distinct, increasing."""
    smallest = max(min(50, n // 2), n // 5, 2)
    return np.unique(np.round(1 / np.linspace(1 / smallest, 1 / n, points)).astype(int))


def fid_infinity(reference: dict[str, Any], fake_features: Features, points: int = 15, seed: int = 0) -> dict[str, Any]:
    """FID∞ (Chong & Forsyth 2020): the intercept of FID = FID∞ + slope / N fitted over generated-set sizes N.

    FID's expectation falls with the generated count N roughly as a + b / N, so the fit's intercept estimates
    the FID of infinitely many generated images against the reference statistics (the real set's own size
    still biases it). For each N of ``fid_infinity_sizes`` (at least 2), FID of N generated rows drawn without
    replacement (``numpy.random.default_rng(seed)``) against ``mu``/``sigma``; least squares on 1/N. Returns
    ``fid_infinity``, ``fid_infinity_slope`` (b) and ``fid_infinity_sizes`` (the N, a list).
    """
    fake = _rows(fake_features)
    _needs(len(fake), 3, "FID∞")
    sizes = fid_infinity_sizes(len(fake), points)
    if len(sizes) < 2:
        raise MetricNoiseError(f"FID∞ needs at least 2 distinct generated-set sizes; got {sizes.tolist()}.")
    rng, score = np.random.default_rng(seed), _FixedRealFID(reference, fake)
    values = [score(np.bincount(rng.choice(len(fake), size, replace=False), minlength=len(fake))) for size in sizes]
    slope, intercept = np.polyfit(1 / sizes, values, 1)
    return {"fid_infinity": float(intercept), "fid_infinity_slope": float(slope), "fid_infinity_sizes": sizes.tolist()}
