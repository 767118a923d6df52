"""Drift detectors on plain arrays, and their calibration on clean resamples.

Each detector is a :class:`Detector`: ``fit(reference)`` then ``score(window)``
returns one number, larger meaning more drift; ``needs`` says which part of a
:class:`Sample` it reads.  :data:`DETECTORS` is the one registry: the stage's
names (:data:`DETECTOR_NAMES`) and its factory (:func:`default_detectors`) come
from it.  Thresholds are never guessed:
:class:`CalibratedDrift` draws windows of the same size from held-out clean data,
scores them, and turns every real window's score into an empirical p-value.  A
window is flagged when any detector fires, with the family's false-alarm rate
held at the setting (the threshold on the smallest p-value is itself calibrated
on the same clean resamples, so correlated detectors do not inflate it).

Usable on any embeddings::

    from components.drift.detectors import Sample, CalibratedDrift
    cal = CalibratedDrift(false_alarm_rate=0.01).fit(Sample(ref_vecs), Sample(heldout_vecs))
    verdict = cal.test(Sample(window_vecs))
    verdict.flagged, [d.p_value for d in verdict.detectors]
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Self

import numpy as np

# scipy is imported where it is used (SoftmaxKS): the stage's Config imports this module for the
# detector names, and compiling a pipeline or printing --help must stay fast.

_NULL_CHUNK = 50  # resampled windows scored at once


def _window_means(x: np.ndarray, index_sets: np.ndarray) -> np.ndarray:
    """Mean vector of each resampled window (B, d), in chunks to bound memory."""
    out = np.empty((len(index_sets), x.shape[1]))
    for lo in range(0, len(index_sets), _NULL_CHUNK):
        idx = index_sets[lo : lo + _NULL_CHUNK]
        out[lo : lo + len(idx)] = x[idx].mean(axis=1, dtype=np.float64)
    return out


class Needs(enum.Enum):
    """The part of a :class:`Sample` a detector reads (embeddings are always there)."""

    EMBEDDINGS = "embeddings"
    PROBABILITIES = "probabilities"
    SCORES = "scores"
    FEATURES = "features"


@dataclass(frozen=True)
class Sample:
    """Rows of one data set or window: embeddings (n, d), optional softmax (n, k), scores (n,), features.

    ``features`` (n, f): image features (the stage passes brightness, contrast and sharpness; NaN
    where a row lacks one).
    """

    embeddings: np.ndarray
    probabilities: np.ndarray | None = None
    scores: np.ndarray | None = None
    features: np.ndarray | None = None

    def __post_init__(self) -> None:
        emb = np.asarray(self.embeddings)
        if emb.ndim != 2:
            raise ValueError(f"embeddings: expected a 2-D array (rows, dimensions), got shape {emb.shape}")
        if emb.size and not np.isfinite(emb).all():
            bad = int((~np.isfinite(emb).all(axis=1)).sum())
            raise ValueError(f"embeddings: {bad} row(s) hold NaN or infinite values; drop or fix them first")
        object.__setattr__(self, "embeddings", emb.astype(np.float32, copy=False))
        n = emb.shape[0]
        if self.probabilities is not None:
            p = np.asarray(self.probabilities, dtype=np.float32)
            if p.ndim != 2 or p.shape[0] != n:
                raise ValueError(f"probabilities: expected shape ({n}, classes), got {p.shape}")
            object.__setattr__(self, "probabilities", p)
        if self.scores is not None:
            s = np.asarray(self.scores, dtype=np.float32)
            if s.shape != (n,):
                raise ValueError(f"scores: expected shape ({n},), got {s.shape}")
            object.__setattr__(self, "scores", s)
        if self.features is not None:
            f = np.asarray(self.features, dtype=np.float64)
            if f.ndim != 2 or f.shape[0] != n:
                raise ValueError(f"features: expected shape ({n}, features), got {f.shape}")
            object.__setattr__(self, "features", f)

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        """Number of embedding dimensions."""
        return int(self.embeddings.shape[1])

    def has(self, needs: Needs) -> bool:
        """Whether this sample holds what a detector with ``needs`` reads."""
        if needs is Needs.PROBABILITIES:
            return self.probabilities is not None
        if needs is Needs.SCORES:
            return self.scores is not None
        if needs is Needs.FEATURES:  # at least one feature with 2 values (what a KS test needs)
            return self.features is not None and bool((np.isfinite(self.features).sum(axis=0) >= 2).any())
        return True

    def take(self, idx: np.ndarray) -> Sample:
        """The rows at ``idx`` (an index array or boolean mask)."""
        return Sample(
            self.embeddings[idx],
            None if self.probabilities is None else self.probabilities[idx],
            None if self.scores is None else self.scores[idx],
            None if self.features is None else self.features[idx],
        )


def _check_same_dim(reference: Sample, window: Sample, what: str) -> None:
    if reference.dim != window.dim:
        raise ValueError(
            f"{what}: window has {window.dim} dimensions, the baseline {reference.dim}; "
            "baseline and production must come from the same model"
        )


def centroid_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between the mean vectors of ``a`` and ``b`` (Arize's embedding drift)."""
    ca = np.asarray(a, dtype=np.float64).mean(axis=0)
    cb = np.asarray(b, dtype=np.float64).mean(axis=0)
    if ca.shape != cb.shape:
        raise ValueError(f"centroid distance: dimensions differ ({ca.shape[0]} vs {cb.shape[0]})")
    return float(np.linalg.norm(ca - cb))


def cosine_distance(u: np.ndarray, v: np.ndarray) -> float:
    """1 - cosine similarity of two vectors (0 when either is all zeros)."""
    nu, nv = float(np.linalg.norm(u)), float(np.linalg.norm(v))
    if nu == 0.0 or nv == 0.0:
        return 0.0
    return float(1.0 - np.dot(u, v) / (nu * nv))


class StreamingCentroid:
    """Mean vector over any number of rows, one chunk at a time (float64 sums, bounded memory)."""

    def __init__(self, dim: int | None = None) -> None:
        self.total = None if dim is None else np.zeros(dim, dtype=np.float64)
        self.count = 0

    def update(self, chunk: np.ndarray) -> StreamingCentroid:
        """Add the rows of ``chunk`` (rows, dimensions)."""
        chunk = np.asarray(chunk)
        if chunk.ndim != 2:
            raise ValueError(f"chunk: expected a 2-D array (rows, dimensions), got shape {chunk.shape}")
        if self.total is None:
            self.total = np.zeros(chunk.shape[1], dtype=np.float64)
        if chunk.shape[1] != len(self.total):
            raise ValueError(f"chunk has {chunk.shape[1]} dimensions, earlier chunks {len(self.total)}")
        self.total += chunk.sum(axis=0, dtype=np.float64)
        self.count += chunk.shape[0]
        return self

    @property
    def centroid(self) -> np.ndarray:
        """The mean of every row seen."""
        if self.total is None or self.count == 0:
            raise ValueError("no rows seen: the centroid of nothing is undefined")
        return self.total / self.count


class Detector(ABC):
    """A drift score of a window against a fitted reference sample; larger means more drift.

    A subclass sets three class attributes: ``name`` (what the stage's ``detectors`` setting and
    the drift table's column prefixes use), ``title`` (the report's chart title) and ``needs`` (the
    part of a :class:`Sample` it reads: when the baseline or the calibration data lack it,
    :class:`CalibratedDrift` leaves the detector out).  It implements ``fit`` and ``score``, and may
    override ``null_scores`` with a batched computation that gives the same numbers.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    needs: ClassVar[Needs] = Needs.EMBEDDINGS

    @classmethod
    def create(cls, seed: int = 0) -> Detector:
        """A fresh detector for a run with ``seed`` (only detectors that draw samples use it)."""
        return cls()

    @abstractmethod
    def fit(self, reference: Sample) -> Self:
        """Learn what ``score`` compares against from the baseline ``reference``; returns ``self``."""

    @abstractmethod
    def score(self, window: Sample) -> float:
        """The drift score of ``window`` against the fitted reference."""

    def null_scores(self, pool: Sample, index_sets: np.ndarray) -> np.ndarray:
        """Scores of the windows ``pool.take(i)``, one per row ``i`` of ``index_sets`` (B, n)."""
        return np.array([self.score(pool.take(i)) for i in index_sets], dtype=np.float64)


@dataclass
class CentroidDistance(Detector):
    """Euclidean distance between the window's centroid and the baseline's (Arize's number)."""

    name: ClassVar[str] = "centroid"
    title: ClassVar[str] = "centroid distance (Euclidean)"
    _centroid: np.ndarray | None = field(default=None, repr=False)

    def fit(self, reference: Sample) -> Self:
        """Keep the baseline's centroid."""
        self._centroid = reference.embeddings.astype(np.float64).mean(axis=0)
        return self

    def score(self, window: Sample) -> float:
        """Distance between the window's centroid and the baseline's."""
        assert self._centroid is not None, "call fit() first"
        c = window.embeddings.astype(np.float64).mean(axis=0)
        return float(np.linalg.norm(c - self._centroid))

    def null_scores(self, pool: Sample, index_sets: np.ndarray) -> np.ndarray:
        """All resampled windows' distances from their mean vectors, in chunks."""
        assert self._centroid is not None, "call fit() first"
        return np.asarray(np.linalg.norm(_window_means(pool.embeddings, index_sets) - self._centroid, axis=1))


@dataclass
class CosineDistance(Detector):
    """Cosine distance between the window's centroid and the baseline's."""

    name: ClassVar[str] = "cosine"
    title: ClassVar[str] = "centroid cosine distance"
    _centroid: np.ndarray | None = field(default=None, repr=False)

    def fit(self, reference: Sample) -> Self:
        """Keep the baseline's centroid."""
        self._centroid = reference.embeddings.astype(np.float64).mean(axis=0)
        return self

    def score(self, window: Sample) -> float:
        """Cosine distance between the window's centroid and the baseline's."""
        assert self._centroid is not None, "call fit() first"
        return cosine_distance(window.embeddings.astype(np.float64).mean(axis=0), self._centroid)

    def null_scores(self, pool: Sample, index_sets: np.ndarray) -> np.ndarray:
        """All resampled windows' distances from their mean vectors, in chunks."""
        assert self._centroid is not None, "call fit() first"
        centroid = self._centroid
        means = _window_means(pool.embeddings, index_sets)
        return np.array([cosine_distance(c, centroid) for c in means])


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32, copy=False)
    b = b.astype(np.float32, copy=False)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.asarray(np.maximum(d, 0.0))


@dataclass
class MMD2(Detector):
    """Unbiased MMD² with an RBF kernel; bandwidth = median pairwise distance of the baseline."""

    name: ClassVar[str] = "mmd2"
    title: ClassVar[str] = "MMD² (RBF)"
    max_reference: int = 1000
    seed: int = 0
    _ref: np.ndarray | None = field(default=None, repr=False)
    _gamma: float = 1.0
    _krr: float = 0.0

    @classmethod
    def create(cls, seed: int = 0) -> MMD2:
        """An MMD² detector whose reference subsample (above ``max_reference`` rows) is drawn with ``seed``."""
        return cls(seed=seed)

    def fit(self, reference: Sample) -> Self:
        """Keep (a subsample of) the baseline, its kernel bandwidth and its mean self-similarity."""
        x = reference.embeddings
        if len(x) < 2:
            raise ValueError("MMD²: the baseline needs at least 2 rows")
        if len(x) > self.max_reference:
            rng = np.random.default_rng(self.seed)
            x = x[rng.choice(len(x), self.max_reference, replace=False)]
        d = _sqdist(x, x)
        med = float(np.median(d[np.triu_indices(len(x), 1)]))
        self._gamma = 1.0 / med if med > 0 else 1.0
        k = np.exp(-self._gamma * d)
        m = len(x)
        self._krr = float((k.sum() - np.trace(k)) / (m * (m - 1)))
        self._ref = x
        return self

    @property
    def bandwidth(self) -> float:
        """The RBF kernel's length scale."""
        return float(np.sqrt(1.0 / self._gamma))

    def _kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(-self._gamma * _sqdist(a, b))

    def score(self, window: Sample) -> float:
        """The unbiased MMD² estimate between the window and the baseline."""
        assert self._ref is not None, "call fit() first"
        w = window.embeddings
        n = len(w)
        if n < 2:
            raise ValueError("MMD²: a window needs at least 2 rows")
        kww = self._kernel(w, w)
        kwr = self._kernel(w, self._ref)
        return float((kww.sum() - np.trace(kww)) / (n * (n - 1)) + self._krr - 2.0 * kwr.mean())

    def null_scores(self, pool: Sample, index_sets: np.ndarray) -> np.ndarray:
        """Scores of many resampled windows of ``pool`` at once (kernel matrices computed once).

        A row drawn more than once is not paired with its copies (they count as distinct draws), so
        a window without repeats scores as :meth:`score` does.
        """
        assert self._ref is not None, "call fit() first"
        kpp = self._kernel(pool.embeddings, pool.embeddings)
        kpr_mean = self._kernel(pool.embeddings, self._ref).mean(axis=1)
        diag = np.diagonal(kpp).astype(np.float64)
        size = len(pool)
        b, n = index_sets.shape
        out = np.empty(b)
        chunk = max(1, min(_NULL_CHUNK, 4_000_000 // (n * n)))  # bounded memory: chunk x n x n pairs
        for lo in range(0, b, chunk):
            idx = index_sets[lo : lo + chunk]
            kww = kpp[idx[:, :, None], idx[:, None, :]].sum(axis=(1, 2), dtype=np.float64)
            # leave out the pairs of a row with itself or a copy of itself: count^2 of each pool row
            flat = (np.arange(len(idx), dtype=np.int64)[:, None] * size + idx).ravel()
            rows, counts = np.unique(flat, return_counts=True)
            owner, c2 = rows // size, counts.astype(np.float64) ** 2
            kww -= np.bincount(owner, weights=c2 * diag[rows % size], minlength=len(idx))
            pairs = n * n - np.bincount(owner, weights=c2, minlength=len(idx))
            out[lo : lo + len(idx)] = (
                kww / np.maximum(pairs, 1) + self._krr - 2.0 * kpr_mean[idx].mean(axis=1)
            )
        return out


def _ks_statistics(ref_sorted: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Two-sample KS statistic of each window (B, n) against one sorted reference column (m,).

    The supremum of |F_ref - F_win| is reached at a window value: the right limit at the last of
    a run of equal values, or the left limit at the first of one (exact with ties).
    """
    m = len(ref_sorted)
    b, n = windows.shape
    w = np.sort(windows, axis=1)
    fr_right = np.searchsorted(ref_sorted, w.ravel(), side="right").reshape(b, n) / m
    fr_left = np.searchsorted(ref_sorted, w.ravel(), side="left").reshape(b, n) / m
    last = np.ones((b, n), dtype=bool)
    last[:, :-1] = w[:, :-1] != w[:, 1:]
    first = np.ones((b, n), dtype=bool)
    first[:, 1:] = w[:, 1:] != w[:, :-1]
    i = np.arange(n)
    d_right = np.where(last, np.abs(fr_right - (i + 1) / n), 0.0).max(axis=1)
    d_left = np.where(first, np.abs(fr_left - i / n), 0.0).max(axis=1)
    return np.asarray(np.maximum(d_right, d_left))


@dataclass
class SoftmaxKS(Detector):
    """Black-box shift detection: KS test per class probability, Bonferroni-combined.

    The score is ``-log10`` of the Bonferroni p-value (asymptotic KS distribution);
    the verdict still comes from calibration, since softmax outputs have ties.
    """

    name: ClassVar[str] = "softmax_ks"
    title: ClassVar[str] = "softmax KS, -log10 Bonferroni p"
    needs: ClassVar[Needs] = Needs.PROBABILITIES
    _ref_sorted: np.ndarray | None = field(default=None, repr=False)

    def fit(self, reference: Sample) -> Self:
        """Keep each class probability of the baseline, sorted."""
        if reference.probabilities is None:
            raise ValueError("softmax KS: the baseline has no probabilities")
        self._ref_sorted = np.sort(reference.probabilities, axis=0)
        return self

    def _p_values(self, probs: np.ndarray) -> np.ndarray:
        """Bonferroni p-value of each window in ``probs`` (B, n, classes)."""
        from scipy.special import kolmogorov

        assert self._ref_sorted is not None, "call fit() first"
        m, k = self._ref_sorted.shape
        n = probs.shape[1]
        d = np.stack([_ks_statistics(self._ref_sorted[:, j], probs[:, :, j]) for j in range(k)], axis=1)
        p = kolmogorov(d * np.sqrt(m * n / (m + n)))
        return np.asarray(np.minimum(1.0, k * p.min(axis=1)))

    def _probabilities(self, window: Sample) -> np.ndarray:
        assert self._ref_sorted is not None, "call fit() first"
        if window.probabilities is None:
            raise ValueError("softmax KS: the window has no probabilities")
        if window.probabilities.shape[1] != self._ref_sorted.shape[1]:
            raise ValueError(
                f"softmax KS: window has {window.probabilities.shape[1]} classes, "
                f"the baseline {self._ref_sorted.shape[1]}"
            )
        return window.probabilities

    def p_value(self, window: Sample) -> float:
        """The Bonferroni-combined asymptotic KS p-value of ``window`` against the baseline."""
        return float(self._p_values(self._probabilities(window)[None])[0])

    def score(self, window: Sample) -> float:
        """``-log10`` of :meth:`p_value`."""
        return float(-np.log10(max(self.p_value(window), 1e-300)))

    def null_scores(self, pool: Sample, index_sets: np.ndarray) -> np.ndarray:
        """Scores of many resampled windows of ``pool``, in chunks."""
        probs = self._probabilities(pool)
        out = np.empty(len(index_sets))
        for lo in range(0, len(index_sets), _NULL_CHUNK):
            idx = index_sets[lo : lo + _NULL_CHUNK]
            out[lo : lo + len(idx)] = -np.log10(np.maximum(self._p_values(probs[idx]), 1e-300))
        return out


@dataclass
class FeatureKS(Detector):
    """Two-sample KS test per image feature (brightness, contrast, sharpness), Bonferroni-combined.

    Image statistics move under blur, noise, rotation, translation, brightness and inversion even
    when only part of a window is affected and the embedding barely moves (a blurred half-window
    lowers the sharpness of a hundred rows). The score is ``-log10`` of the Bonferroni p-value
    (asymptotic KS distribution), calibrated like every detector. Features without a finite value
    in the baseline are left out; a row with any non-finite feature is left out of this detector
    (the window's test then uses its other rows; the null is drawn the same way). A window
    without features at all scores 0 (no evidence), so it never fires this detector.
    """

    name: ClassVar[str] = "feature_ks"
    title: ClassVar[str] = "image features KS (brightness, contrast, sharpness), -log10 Bonferroni p"
    needs: ClassVar[Needs] = Needs.FEATURES
    _ref_sorted: list[np.ndarray] = field(default_factory=list, repr=False)
    _columns: np.ndarray | None = field(default=None, repr=False)

    def fit(self, reference: Sample) -> Self:
        """Keep each feature's finite baseline values, sorted (features with fewer than 2 are left out)."""
        if reference.features is None:
            raise ValueError("feature KS: the baseline has no image features")
        f = reference.features
        cols = [j for j in range(f.shape[1]) if np.isfinite(f[:, j]).sum() >= 2]
        if not cols:
            raise ValueError("feature KS: no image feature has at least 2 finite values in the baseline")
        self._columns = np.asarray(cols)
        self._ref_sorted = [np.sort(f[np.isfinite(f[:, j]), j]) for j in cols]
        return self

    def _features(self, sample: Sample, what: str) -> np.ndarray:
        assert self._columns is not None, "call fit() first"
        if sample.features is None:
            raise ValueError(f"feature KS: the {what} has no image features")
        if sample.features.shape[1] <= int(self._columns.max()):
            raise ValueError(
                f"feature KS: the {what} has {sample.features.shape[1]} features, the baseline more"
            )
        return sample.features[:, self._columns]

    def _p_values(self, feats: np.ndarray) -> np.ndarray:
        """Bonferroni p-value of each window in ``feats`` (B, n, features), all values finite."""
        from scipy.special import kolmogorov

        n = feats.shape[1]
        k = len(self._ref_sorted)
        if n < 2:
            return np.ones(feats.shape[0])
        p = np.stack(
            [
                kolmogorov(_ks_statistics(r, feats[:, :, j]) * np.sqrt(len(r) * n / (len(r) + n)))
                for j, r in enumerate(self._ref_sorted)
            ],
            axis=1,
        )
        return np.asarray(np.minimum(1.0, k * p.min(axis=1)))

    def p_value(self, window: Sample) -> float:
        """The Bonferroni-combined asymptotic KS p-value of ``window``'s rows with every feature finite.

        1 (no evidence) for a window without image features, or with fewer than 2 such rows.
        """
        if window.features is None:
            return 1.0
        f = self._features(window, "window")
        f = f[np.isfinite(f).all(axis=1)]
        return float(self._p_values(f[None])[0])

    def score(self, window: Sample) -> float:
        """``-log10`` of :meth:`p_value`."""
        return float(-np.log10(max(self.p_value(window), 1e-300)))

    def null_scores(self, pool: Sample, index_sets: np.ndarray) -> np.ndarray:
        """Scores of many resampled windows of ``pool``, in chunks (one at a time when a pool row lacks a feature)."""
        f = self._features(pool, "calibration data")
        if not np.isfinite(f).all():
            return super().null_scores(pool, index_sets)
        out = np.empty(len(index_sets))
        for lo in range(0, len(index_sets), _NULL_CHUNK):
            idx = index_sets[lo : lo + _NULL_CHUNK]
            out[lo : lo + len(idx)] = -np.log10(np.maximum(self._p_values(f[idx]), 1e-300))
        return out


@dataclass
class ConfidenceDrop(Detector):
    """Fall of the mean prediction score from the baseline's."""

    name: ClassVar[str] = "confidence_drop"
    title: ClassVar[str] = "confidence drop"
    needs: ClassVar[Needs] = Needs.SCORES
    _mean: float = 0.0

    def fit(self, reference: Sample) -> Self:
        """Keep the baseline's mean prediction score."""
        if reference.scores is None:
            raise ValueError("confidence drop: the baseline has no scores")
        self._mean = float(reference.scores.astype(np.float64).mean())
        return self

    def score(self, window: Sample) -> float:
        """The baseline's mean score minus the window's."""
        if window.scores is None:
            raise ValueError("confidence drop: the window has no scores")
        return float(self._mean - window.scores.astype(np.float64).mean())

    def null_scores(self, pool: Sample, index_sets: np.ndarray) -> np.ndarray:
        """All resampled windows' drops at once."""
        if pool.scores is None:
            raise ValueError("confidence drop: the calibration data have no scores")
        return np.asarray(self._mean - pool.scores.astype(np.float64)[index_sets].mean(axis=1))


# The one registry, in the order the stage runs and reports them.
DETECTORS: dict[str, type[Detector]] = {
    cls.name: cls for cls in (CentroidDistance, CosineDistance, MMD2, SoftmaxKS, ConfidenceDrop, FeatureKS)
}
DETECTOR_NAMES: tuple[str, ...] = tuple(DETECTORS)


def check_detector_names(names: Sequence[str]) -> None:
    """Raise a ValueError naming the ``detectors`` setting unless ``names`` is a non-empty list of known ones."""
    unknown = [n for n in names if n not in DETECTORS]
    if unknown or not names:
        raise ValueError(
            f"detectors {list(names)}: expected a non-empty list from {', '.join(DETECTOR_NAMES)}"
        )


def default_detectors(seed: int = 0, names: Sequence[str] = DETECTOR_NAMES) -> list[Detector]:
    """Fresh detector objects, by name (all of them by default)."""
    check_detector_names(names)
    return [DETECTORS[n].create(seed) for n in names]


MAX_RESAMPLES = 20_000  # the most clean resamples drawn per window size (memory: resamples x rows indices)

# How a run's windows share its false-alarm rate (the ``alert_rule`` setting):
SIDAK = "sidak"  # each of the m windows tested at 1 - (1 - rate)^(1/m): P(any clean window flagged) <= rate
FDR = "fdr"  # Benjamini-Hochberg across the m windows: the same bound when every window is clean
PER_WINDOW = "per_window"  # each window at rate (a run of m clean windows alerts with up to 1 - (1 - rate)^m)
ALERT_RULES: tuple[str, ...] = (SIDAK, FDR, PER_WINDOW)


def check_alert_rule(rule: str) -> None:
    """Raise a ValueError naming the ``alert_rule`` setting unless ``rule`` is one of :data:`ALERT_RULES`."""
    if rule not in ALERT_RULES:
        raise ValueError(f"alert_rule={rule!r}: expected one of {', '.join(ALERT_RULES)}")


def window_level(rule: str, rate: float, m: int) -> float:
    """The per-window level that holds ``rate`` for a run testing ``m`` windows under ``rule``.

    ``sidak``: ``1 - (1 - rate) ** (1 / m)`` (a run of m independent clean windows raises a false
    alert with probability exactly ``rate``); ``fdr``: ``rate / m``, the smallest level the
    Benjamini-Hochberg rule can use (the calibration is drawn fine enough for it; the level actually
    applied comes from :func:`fdr_level`); ``per_window``: ``rate``.
    """
    check_alert_rule(rule)
    m = max(int(m), 1)
    if rule == SIDAK:
        return float(-np.expm1(np.log1p(-rate) / m))
    if rule == FDR:
        return rate / m
    return rate


def fdr_level(p_values: Sequence[float], rate: float) -> float:
    """The Benjamini-Hochberg level for these window p-values: windows at or below it are flagged.

    The largest ``rate * k / m`` with at least ``k`` p-values at or below it; ``rate / m`` when there
    is none (then no p-value is at or below it, since the smallest exceeds ``rate / m``).
    """
    p = np.sort(np.asarray(p_values, dtype=np.float64))
    m = len(p)
    if m == 0:
        return rate
    ok = np.flatnonzero(p <= rate * np.arange(1, m + 1) / m)
    k = int(ok[-1]) + 1 if len(ok) else 1
    return rate * k / m


def run_false_alarm(rule: str, rate: float, m: int) -> float:
    """The probability that a run of ``m`` independent clean windows raises a false alert under ``rule``."""
    check_alert_rule(rule)
    if rule == PER_WINDOW:
        return float(-np.expm1(max(int(m), 1) * np.log1p(-rate)))
    return rate


def min_resamples(false_alarm_rate: float) -> int:
    """The fewest clean resamples that calibrate ``false_alarm_rate``: 5 beyond the threshold, 100 at least."""
    return max(100, int(np.ceil(5 / false_alarm_rate)))


def resamples_for(level: float, at_least: int) -> int:
    """Resamples drawn for a per-window ``level``: ``at_least``, more when the level needs it, at most MAX_RESAMPLES.

    A fine level needs ``3 / level`` (3 resamples beyond the threshold; the test is valid with any
    number, since the window and the resamples are exchangeable on clean data, but steadier with more).
    """
    return max(at_least, min(MAX_RESAMPLES, int(np.ceil(3 / level))))


def grid_size(n: int, min_rows: int, step: float) -> int:
    """The largest size of the grid ``floor(min_rows * step**k)`` at or below ``n`` (``n`` when step is 1).

    Windows are tested on a sample of that many rows, so windows of similar sizes share one
    calibration (each distinct size costs a null distribution of thousands of resamples).
    """
    if step <= 1.0 or n <= min_rows:
        return n
    k = int(np.floor(np.log((n + 1) / min_rows) / np.log(step)))  # floor(min_rows * step**k) <= n
    size = int(np.floor(min_rows * step**k + 1e-9))
    while size > n:  # floating-point edge
        k -= 1
        size = int(np.floor(min_rows * step**k + 1e-9))
    return max(min_rows, size)


def check_calibration(
    false_alarm_rate: float,
    resamples: int,
    rate_name: str = "false_alarm_rate",
    resamples_name: str = "n_resamples",
) -> None:
    """Raise a ValueError naming the setting when the rate or the number of resamples cannot work."""
    if not 0.0 < false_alarm_rate < 0.5:
        raise ValueError(f"{rate_name}={false_alarm_rate}: expected a value in (0, 0.5), e.g. 0.01")
    least = min_resamples(false_alarm_rate)
    if resamples < least:
        raise ValueError(
            f"{resamples_name}={resamples}: too few for {rate_name}={false_alarm_rate}; use at least {least}"
        )
    if resamples > MAX_RESAMPLES:
        raise ValueError(f"{resamples_name}={resamples}: at most {MAX_RESAMPLES} (memory grows with it)")


@dataclass(frozen=True)
class DetectorResult:
    """One detector on one window: its score, calibrated threshold, p-value and verdict."""

    name: str
    score: float
    threshold: float
    p_value: float
    drifted: bool


@dataclass(frozen=True)
class WindowVerdict:
    """Every detector on one window, or none when the window is too small to test.

    ``p_value``: the window's family p-value (how often a clean resampled window's smallest detector
    p-value is at or below this window's); ``level``: the per-window level it was tested at.
    """

    n_rows: int
    status: str  # "ok" or "too_few_rows"
    detectors: tuple[DetectorResult, ...]
    p_value: float = float("nan")
    level: float = float("nan")

    @property
    def flagged(self) -> bool:
        """Tested, and at least one detector fired."""
        return self.status == "ok" and any(d.drifted for d in self.detectors)

    @property
    def fired(self) -> list[str]:
        """Names of the detectors that fired."""
        return [d.name for d in self.detectors if d.drifted]

    def by_name(self, name: str) -> DetectorResult:
        """The result of the detector called ``name`` (KeyError when it did not run)."""
        for d in self.detectors:
            if d.name == name:
                return d
        raise KeyError(name)


@dataclass
class NullDistribution:
    """Every detector's scores on clean resampled windows of one size, and the levels they give."""

    scores: dict[str, np.ndarray]  # detector -> sorted null scores
    min_p: np.ndarray  # each resample's smallest leave-one-out p-value across detectors, sorted

    @property
    def resamples(self) -> int:
        """How many clean windows were drawn."""
        return len(self.min_p)

    def family_p(self, level: float) -> float:
        """The per-detector p-value level that holds ``level`` for the window (all detectors together).

        The largest value at or below which at most ``floor(level * B)`` of the B resamples' smallest
        p-values lie (0 when the level is finer than the resamples can tell).
        """
        b = len(self.min_p)
        k = int(np.floor(level * b + 1e-9))
        if k < 1:
            return 0.0
        family_p = float(self.min_p[min(k, b) - 1])
        if k < b and self.min_p[k] == family_p:  # ties: stay below them
            family_p = float(np.nextafter(family_p, 0.0))
        return family_p

    def thresholds(self, level: float) -> dict[str, float]:
        """Each detector's score threshold at ``level``: a score above it fires."""
        b = len(self.min_p)
        c = int(
            np.floor(self.family_p(level) * (1 + b) - 1 + 1e-9)
        )  # fires when at most c null values reach it
        return {
            name: (float(s[b - 1 - c]) if 0 <= c < b else float("inf")) for name, s in self.scores.items()
        }

    def window_p(self, min_p: float) -> float:
        """The family p-value of a window whose smallest detector p-value is ``min_p``."""
        at_or_below = int(np.searchsorted(self.min_p, min_p * (1 + 1e-12), side="right"))
        return float((1 + at_or_below) / (1 + len(self.min_p)))


def _empirical_p(null_sorted: np.ndarray, s: float) -> float:
    exceed = len(null_sorted) - np.searchsorted(null_sorted, s, side="left")
    return float((1 + exceed) / (1 + len(null_sorted)))


class CalibratedDrift:
    """Detectors with thresholds calibrated on same-sized windows of held-out clean data.

    ``fit(reference, pool)``: ``reference`` is the baseline sample the detectors compare
    against; ``pool`` is held-out clean data (validation, rows of a known-good production period, or
    baseline rows not in the reference).  ``test(window, level)`` gives each detector's score,
    p-value and verdict at the per-window ``level`` (default ``false_alarm_rate``).  The null
    distribution is drawn once per window size, with at least ``n_resamples`` resamples and more
    when a fine level needs them (:func:`resamples_for`).  With ``size_step`` above 1, a window is
    tested on a uniform sample of :func:`grid_size` rows, so similar sizes share one null distribution.
    """

    def __init__(
        self,
        detectors: list[Detector] | None = None,
        false_alarm_rate: float = 0.01,
        n_resamples: int = 1000,
        min_rows: int = 20,
        seed: int = 0,
        size_step: float = 1.0,
    ) -> None:
        check_calibration(false_alarm_rate, n_resamples)
        if size_step < 1.0:
            raise ValueError(f"size_step={size_step}: expected at least 1 (1: every window size calibrated)")
        if min_rows < 2:
            raise ValueError(f"min_rows={min_rows}: expected at least 2")
        self.detectors = detectors if detectors is not None else default_detectors(seed)
        self.false_alarm_rate = false_alarm_rate
        self.n_resamples = n_resamples
        self.min_rows = min_rows
        self.seed = seed
        self.size_step = size_step
        self._pool: Sample | None = None
        self._reference: Sample | None = None
        self._nulls: dict[int, NullDistribution] = {}
        self._levels: dict[int, float] = {}

    def fit(self, reference: Sample, pool: Sample) -> CalibratedDrift:
        """Fit the detectors on ``reference``; keep ``pool`` to draw null windows from.

        Detectors whose ``needs`` the reference or the pool lack are left out (see :attr:`names`).
        """
        if len(reference) < self.min_rows:
            raise ValueError(f"baseline: {len(reference)} rows, need at least min_rows={self.min_rows}")
        if len(pool) < self.min_rows:
            raise ValueError(
                f"calibration data: {len(pool)} rows, need at least min_rows={self.min_rows} "
                "(validation rows, rows of the reference period, or baseline rows held out from the reference)"
            )
        _check_same_dim(reference, pool, "calibration data")
        self.detectors = [
            det.fit(reference) for det in self.detectors if reference.has(det.needs) and pool.has(det.needs)
        ]
        self._reference, self._pool = reference, pool
        self._nulls = {}
        self._levels = {}
        return self

    @property
    def names(self) -> list[str]:
        """The detectors that run, in order."""
        return [d.name for d in self.detectors]

    @property
    def family_levels(self) -> dict[int, float]:
        """Per window size tested so far, the per-detector p-value level that held the window's level."""
        return {n: self._nulls[n].family_p(self._levels[n]) for n in sorted(self._levels)}

    @property
    def window_levels(self) -> dict[int, float]:
        """Per window size tested so far, the per-window level of the last test."""
        return dict(sorted(self._levels.items()))

    @property
    def resamples_drawn(self) -> dict[int, int]:
        """Per window size drawn so far, how many clean windows were drawn."""
        return {n: nul.resamples for n, nul in sorted(self._nulls.items())}

    def null(self, n: int, level: float | None = None) -> NullDistribution:
        """Null distribution of every detector for windows of ``n`` rows (drawn once per size, cached).

        Drawn again with more resamples when ``level`` needs more than the cached one has.
        """
        if self._pool is None:
            raise RuntimeError("call fit() first")
        b = resamples_for(self.false_alarm_rate if level is None else level, self.n_resamples)
        if n in self._nulls and self._nulls[n].resamples >= b:
            return self._nulls[n]
        pool = self._pool
        rng = np.random.default_rng([self.seed, n])
        # Each clean window is drawn from a bootstrap replicate of the pool (N rows drawn with
        # replacement), n rows with replacement. Its mean then varies by sigma^2 (1/n + 1/N): a fresh
        # clean window's own variation (without replacement from the pool it would vary (N-n)/(N-1)
        # times less), plus the uncertainty of the pool itself, which matters when the reference
        # sits apart from the pool (a training reference against a production-source pool: there,
        # the pool's chance offset along the gap would otherwise shift every null score at once).
        # Detectors score repeated rows as distinct draws (MMD² leaves out a row's pairs with its copies).
        size = len(pool)
        idx = np.empty((b, n), dtype=np.int32)
        for lo in range(0, b, 256):
            m = min(256, b - lo)
            replicate = rng.integers(0, size, size=(m, size), dtype=np.int32)
            idx[lo : lo + m] = np.take_along_axis(replicate, rng.integers(0, size, size=(m, n)), axis=1)
        scores: dict[str, np.ndarray] = {}
        for det in self.detectors:
            scores[det.name] = det.null_scores(pool, idx)
        del idx
        # Leave-one-out p-values of each resample under each detector, then the smallest per
        # resample: its quantiles are the per-detector levels that hold a window's level.
        pmat = np.empty((b, len(self.detectors)))
        for j, det in enumerate(self.detectors):
            s = scores[det.name]
            ranks = np.searchsorted(np.sort(s), s, side="left")  # how many are strictly smaller
            pmat[:, j] = (1 + (b - ranks) - 1) / b  # 1 + others >= s, over b
        nul = NullDistribution({name: np.sort(s) for name, s in scores.items()}, np.sort(pmat.min(axis=1)))
        self._nulls[n] = nul
        return nul

    def test(self, window: Sample, level: float | None = None) -> WindowVerdict:
        """Every detector's score, threshold, p-value and verdict on ``window`` at the per-window ``level``."""
        if self._reference is None:
            raise RuntimeError("call fit() first")
        level = self.false_alarm_rate if level is None else level
        if not 0.0 < level < 0.5:
            raise ValueError(f"level={level}: expected a per-window false-alarm level in (0, 0.5)")
        rows = len(window)
        if rows < self.min_rows:
            return WindowVerdict(rows, "too_few_rows", ())
        _check_same_dim(self._reference, window, "window")
        n = grid_size(rows, self.min_rows, self.size_step)
        if n < rows:  # a uniform sample of the grid's size (the same rows for the same window)
            keep = np.random.default_rng([self.seed, rows, 3]).choice(rows, n, replace=False)
            window = window.take(np.sort(keep))
        nul = self.null(n, level)
        self._levels[n] = level
        family_p, thresholds = nul.family_p(level), nul.thresholds(level)
        results = []
        for det in self.detectors:
            s = det.score(window)
            p = _empirical_p(nul.scores[det.name], s)
            results.append(DetectorResult(det.name, s, thresholds[det.name], p, p <= family_p))
        min_p = min((r.p_value for r in results), default=1.0)
        return WindowVerdict(rows, "ok", tuple(results), nul.window_p(min_p), level)
