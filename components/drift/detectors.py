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


@dataclass(frozen=True)
class Sample:
    """Rows of one data set or window: embeddings (n, d), optional softmax (n, k) and scores (n,)."""

    embeddings: np.ndarray
    probabilities: np.ndarray | None = None
    scores: np.ndarray | None = None

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
        return True

    def take(self, idx: np.ndarray) -> Sample:
        """The rows at ``idx`` (an index array or boolean mask)."""
        return Sample(
            self.embeddings[idx],
            None if self.probabilities is None else self.probabilities[idx],
            None if self.scores is None else self.scores[idx],
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
        """Scores of many resampled windows of ``pool`` at once (kernel matrices computed once)."""
        assert self._ref is not None, "call fit() first"
        kpp = self._kernel(pool.embeddings, pool.embeddings)
        kpr_mean = self._kernel(pool.embeddings, self._ref).mean(axis=1)
        diag = np.diagonal(kpp)
        b, n = index_sets.shape
        out = np.empty(b)
        for lo in range(0, b, _NULL_CHUNK):
            idx = index_sets[lo : lo + _NULL_CHUNK]
            sub = kpp[idx[:, :, None], idx[:, None, :]].sum(axis=(1, 2), dtype=np.float64)
            sub -= diag[idx].sum(axis=1, dtype=np.float64)
            out[lo : lo + len(idx)] = sub / (n * (n - 1)) + self._krr - 2.0 * kpr_mean[idx].mean(axis=1)
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
    cls.name: cls for cls in (CentroidDistance, CosineDistance, MMD2, SoftmaxKS, ConfidenceDrop)
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


def min_resamples(false_alarm_rate: float) -> int:
    """The fewest clean resamples that calibrate ``false_alarm_rate``: 5 beyond the threshold, 100 at least."""
    return max(100, int(np.ceil(5 / false_alarm_rate)))


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
    """Every detector on one window, or none when the window is too small to test."""

    n_rows: int
    status: str  # "ok" or "too_few_rows"
    detectors: tuple[DetectorResult, ...]

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
    family_p: float  # per-detector p-value threshold holding the family rate
    thresholds: dict[str, float]  # detector -> score threshold at family_p


def _empirical_p(null_sorted: np.ndarray, s: float) -> float:
    exceed = len(null_sorted) - np.searchsorted(null_sorted, s, side="left")
    return float((1 + exceed) / (1 + len(null_sorted)))


class CalibratedDrift:
    """Detectors with thresholds calibrated on same-sized windows of held-out clean data.

    ``fit(reference, pool)``: ``reference`` is the baseline sample the detectors compare
    against; ``pool`` is held-out clean data (validation, or baseline rows not in the
    reference).  ``test(window)`` gives each detector's score, p-value and verdict.
    The null distribution is drawn (once per window size) on first use.
    """

    def __init__(
        self,
        detectors: list[Detector] | None = None,
        false_alarm_rate: float = 0.01,
        n_resamples: int = 1000,
        min_rows: int = 20,
        seed: int = 0,
    ) -> None:
        check_calibration(false_alarm_rate, n_resamples)
        if min_rows < 2:
            raise ValueError(f"min_rows={min_rows}: expected at least 2")
        self.detectors = detectors if detectors is not None else default_detectors(seed)
        self.false_alarm_rate = false_alarm_rate
        self.n_resamples = n_resamples
        self.min_rows = min_rows
        self.seed = seed
        self._pool: Sample | None = None
        self._reference: Sample | None = None
        self._nulls: dict[int, NullDistribution] = {}

    def fit(self, reference: Sample, pool: Sample) -> CalibratedDrift:
        """Fit the detectors on ``reference``; keep ``pool`` to draw null windows from.

        Detectors whose ``needs`` the reference or the pool lack are left out (see :attr:`names`).
        """
        if len(reference) < self.min_rows:
            raise ValueError(f"baseline: {len(reference)} rows, need at least min_rows={self.min_rows}")
        if len(pool) < self.min_rows:
            raise ValueError(
                f"calibration data: {len(pool)} rows, need at least min_rows={self.min_rows} "
                "(validation rows, or baseline rows held out from the reference)"
            )
        _check_same_dim(reference, pool, "calibration data")
        self.detectors = [
            det.fit(reference) for det in self.detectors if reference.has(det.needs) and pool.has(det.needs)
        ]
        self._reference, self._pool = reference, pool
        self._nulls = {}
        return self

    @property
    def names(self) -> list[str]:
        """The detectors that run, in order."""
        return [d.name for d in self.detectors]

    @property
    def family_levels(self) -> dict[int, float]:
        """Per window size drawn so far, the per-detector p-value level that holds the family rate."""
        return {n: self._nulls[n].family_p for n in sorted(self._nulls)}

    def null(self, n: int) -> NullDistribution:
        """Null distribution of every detector for windows of ``n`` rows (drawn once, cached)."""
        if self._pool is None:
            raise RuntimeError("call fit() first")
        if n in self._nulls:
            return self._nulls[n]
        pool = self._pool
        rng = np.random.default_rng([self.seed, n])
        replace = n > len(pool)
        if replace:
            idx = rng.integers(0, len(pool), size=(self.n_resamples, n))
        else:
            idx = np.stack([rng.choice(len(pool), n, replace=False) for _ in range(self.n_resamples)])
        scores: dict[str, np.ndarray] = {}
        for det in self.detectors:
            scores[det.name] = det.null_scores(pool, idx)
        # Leave-one-out p-values of each resample under each detector, then the smallest per
        # resample: its alpha-quantile is the per-detector level that holds the family rate.
        b = self.n_resamples
        pmat = np.empty((b, len(self.detectors)))
        for j, det in enumerate(self.detectors):
            s = scores[det.name]
            ranks = np.searchsorted(np.sort(s), s, side="left")  # how many are strictly smaller
            exceed_others = (b - ranks) - 1  # others >= s
            pmat[:, j] = (1 + exceed_others) / b
        minp = np.sort(pmat.min(axis=1))
        k = int(np.floor(self.false_alarm_rate * b))
        family_p = float(minp[k - 1]) if k >= 1 else 0.0
        # choose the largest level whose null fraction stays within the rate
        if k < b and minp[k] == family_p:
            family_p = float(np.nextafter(family_p, 0.0))
        sorted_scores = {name: np.sort(s) for name, s in scores.items()}
        # a score fires when at most c null values reach it: above the (c+1)-th largest
        c = int(np.floor(family_p * (1 + b) - 1 + 1e-9))
        thresholds = {
            name: (float(s[b - 1 - c]) if 0 <= c < b else float("inf")) for name, s in sorted_scores.items()
        }
        nul = NullDistribution(sorted_scores, family_p, thresholds)
        self._nulls[n] = nul
        return nul

    def test(self, window: Sample) -> WindowVerdict:
        """Every detector's score, threshold, p-value and verdict on ``window``."""
        if self._reference is None:
            raise RuntimeError("call fit() first")
        n = len(window)
        if n < self.min_rows:
            return WindowVerdict(n, "too_few_rows", ())
        _check_same_dim(self._reference, window, "window")
        nul = self.null(n)
        results = []
        for det in self.detectors:
            s = det.score(window)
            p = _empirical_p(nul.scores[det.name], s)
            results.append(DetectorResult(det.name, s, nul.thresholds[det.name], p, p <= nul.family_p))
        return WindowVerdict(n, "ok", tuple(results))
