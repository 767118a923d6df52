"""Why a window drifted: which image features moved, which classes moved, and examples of what moved.

Computed from what the stage already holds in memory: the baseline's reference sample and each
window's bounded sample (at most ``max_window_rows`` rows), so the cost is bounded whatever the
size of production. For each flagged window:

- :func:`feature_shifts`: per image feature (brightness, contrast, sharpness), a two-sample KS test
  against the baseline, its p-value, the standardised mean difference and the Wasserstein distance,
  both in baseline standard deviations (as Arize and Evidently show per-feature drift);
- :func:`class_shifts`: each predicted class's share and mean confidence, window against baseline,
  with a two-proportion test of the share; largest share changes first;
- :func:`novelty` and :func:`nearest_examples`: each window row's distance to its nearest baseline
  rows (in units of the baseline's own nearest-neighbour distance); the rows farther than 99% of
  baseline rows are the drifted group, and the examples are the group's rows nearest its centroid;
- :func:`sentence`: one plain-language sentence from these figures.

Strings from the data (labels, degradation, links) are returned as they are: the report escapes them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats

from components.common import schema
from components.drift.io import Rows
from components.drift.view import ImageScope, load_thumbnails

C = schema.PreparedColumns

# A feature or class is named in the sentence when its test's p-value is under this level divided by
# the number of features (classes) tested, and its effect is at least the minimum below.
NAMING_LEVEL = 0.01
MIN_FEATURE_EFFECT = 0.2  # baseline standard deviations
MIN_SHARE_CHANGE = 0.03  # absolute change of a class's predicted share
NOVELTY_QUANTILE = 0.99  # a window row is "novel" when farther from the baseline than 99% of baseline rows
NEIGHBOURS = 5
EXAMPLES = 8
_CHUNK = 256  # rows per block of the distance computation (bounded memory)
_MAX_SELF = 1000  # baseline rows whose own neighbour distances calibrate the novelty


@dataclass(frozen=True)
class FeatureShift:
    """How one image feature moved in a window, against the baseline."""

    feature: str
    baseline_mean: float
    window_mean: float
    smd: float  # (window mean - baseline mean) / baseline standard deviation
    wasserstein: float  # Wasserstein-1 distance / baseline standard deviation (>= |smd|)
    ks: float  # two-sample KS statistic
    p_value: float  # of the KS test

    @property
    def direction(self) -> str:
        """``rose`` or ``fell`` (the sign of the mean difference)."""
        return "rose" if self.smd >= 0 else "fell"


@dataclass(frozen=True)
class ClassShift:
    """One predicted class's share of the rows and mean confidence, window against baseline."""

    label: str
    baseline_share: float
    window_share: float
    baseline_confidence: float  # mean prediction score of the rows predicted as this class (NaN: none)
    window_confidence: float
    p_value: float  # two-proportion z-test of the share

    @property
    def share_change(self) -> float:
        """Window share minus baseline share."""
        return self.window_share - self.baseline_share

    @property
    def confidence_change(self) -> float:
        """Window mean confidence minus the baseline's (NaN when either has no such row)."""
        return self.window_confidence - self.baseline_confidence


@dataclass(frozen=True)
class Novelty:
    """Each window row's distance to its nearest baseline rows, in baseline nearest-neighbour units."""

    scores: np.ndarray  # per window row; 1.0 = the median baseline row's distance to its neighbours
    threshold: float  # the baseline's NOVELTY_QUANTILE of the same score
    share: float  # fraction of window rows above the threshold (about 1% on clean data)


@dataclass(frozen=True)
class Example:
    """A window row shown as an example of what moved."""

    row: int  # index in the window's sample
    label: str  # predicted label
    confidence: float  # prediction score
    degradation: str  # ground truth when known, else ""
    novelty: float
    link: str
    thumbnail: str = ""  # a data URI, filled by :func:`with_thumbnails`
    key: str = ""  # prediction_id: finds the image in the prepared folders' images files


@dataclass(frozen=True)
class Explanation:
    """Why one window drifted: the figures and the sentence made from them."""

    window_start: pd.Timestamp
    label: str  # the window's start as shown (e.g. 2026-11-24)
    n_rows: int  # rows of the window's sample used
    features: list[FeatureShift] = field(default_factory=list)  # most moved first
    classes: list[ClassShift] = field(default_factory=list)  # largest share change first
    baseline_confidence: float = math.nan
    window_confidence: float = math.nan
    novel_share: float = math.nan
    novel_threshold: float = math.nan
    examples: list[Example] = field(default_factory=list)
    sentence: str = ""


# -- features -----------------------------------------------------------------------------------------


def _finite(values: np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return x[np.isfinite(x)]


def feature_shift(name: str, baseline: np.ndarray, window: np.ndarray) -> FeatureShift | None:
    """The shift of one feature (None when either side has fewer than 2 finite values)."""
    b, w = _finite(baseline), _finite(window)
    if len(b) < 2 or len(w) < 2:
        return None
    scale = float(b.std(ddof=1))
    if not scale > 0:
        scale = float(np.concatenate([b, w]).std(ddof=1)) or 1.0
    test = stats.ks_2samp(b, w)
    return FeatureShift(
        feature=name,
        baseline_mean=float(b.mean()),
        window_mean=float(w.mean()),
        smd=float((w.mean() - b.mean()) / scale),
        wasserstein=float(stats.wasserstein_distance(b, w) / scale),
        ks=float(test.statistic),
        p_value=float(test.pvalue),
    )


def feature_shifts(
    baseline: Mapping[str, np.ndarray], window: Mapping[str, np.ndarray]
) -> list[FeatureShift]:
    """Every feature both sides have, the most moved first (Wasserstein distance in baseline SDs)."""
    found = [feature_shift(f, baseline[f], window[f]) for f in baseline if f in window]
    return sorted((s for s in found if s is not None), key=lambda s: (-s.wasserstein, s.p_value))


# -- classes ------------------------------------------------------------------------------------------


def _two_proportion_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of a two-proportion z-test (1.0 when undefined)."""
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = abs(k1 / n1 - k2 / n2) / se
    return float(math.erfc(z / math.sqrt(2)))


def _mean_or_nan(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else math.nan


def class_shifts(
    baseline_labels: np.ndarray,
    baseline_scores: np.ndarray,
    window_labels: np.ndarray,
    window_scores: np.ndarray,
) -> list[ClassShift]:
    """Each predicted class's share and mean confidence, the largest share change first."""
    bl, wl = np.asarray(baseline_labels).astype(str), np.asarray(window_labels).astype(str)
    bs, ws = np.asarray(baseline_scores, dtype=np.float64), np.asarray(window_scores, dtype=np.float64)
    nb, nw = len(bl), len(wl)
    out = []
    for label in sorted(set(bl.tolist()) | set(wl.tolist())):
        in_b, in_w = bl == label, wl == label
        kb, kw = int(in_b.sum()), int(in_w.sum())
        out.append(
            ClassShift(
                label=label,
                baseline_share=kb / nb if nb else math.nan,
                window_share=kw / nw if nw else math.nan,
                baseline_confidence=_mean_or_nan(bs[in_b]),
                window_confidence=_mean_or_nan(ws[in_w]),
                p_value=_two_proportion_p(kb, nb, kw, nw),
            )
        )
    return sorted(out, key=lambda c: (-abs(c.share_change), c.p_value, c.label))


# -- rows farthest from the baseline ------------------------------------------------------------------


def knn_distance(
    reference: np.ndarray, rows: np.ndarray, k: int = NEIGHBOURS, skip_self: bool = False
) -> np.ndarray:
    """Mean Euclidean distance of each of ``rows`` to its ``k`` nearest ``reference`` rows.

    Computed ``_CHUNK`` rows at a time (memory: one chunk times the reference). ``skip_self``:
    ``rows`` are reference rows and each one's zero distance to itself is left out.
    """
    ref = np.asarray(reference, dtype=np.float64)
    x = np.asarray(rows, dtype=np.float64)
    k = max(1, min(k, len(ref) - (1 if skip_self else 0)))
    ref_sq = (ref**2).sum(axis=1)
    out = np.empty(len(x))
    for s in range(0, len(x), _CHUNK):
        block = x[s : s + _CHUNK]
        d2 = (block**2).sum(axis=1)[:, None] + ref_sq[None, :] - 2.0 * block @ ref.T
        np.maximum(d2, 0.0, out=d2)
        take = k + 1 if skip_self else k
        near = np.sort(np.partition(d2, take - 1, axis=1)[:, :take], axis=1)
        if skip_self:
            near = near[:, 1:]
        out[s : s + len(block)] = np.sqrt(near).mean(axis=1)
    return out


def baseline_knn(reference: np.ndarray, seed: int = 0, k: int = NEIGHBOURS) -> np.ndarray:
    """The baseline rows' own distances to their ``k`` nearest other baseline rows (at most ``_MAX_SELF``)."""
    ref = np.asarray(reference, dtype=np.float64)
    pick = np.random.default_rng(seed).choice(len(ref), min(_MAX_SELF, len(ref)), replace=False)
    return knn_distance(ref, ref[pick], k, skip_self=True)


def novelty(
    reference: np.ndarray,
    window: np.ndarray,
    seed: int = 0,
    k: int = NEIGHBOURS,
    own: np.ndarray | None = None,
) -> Novelty:
    """How far each window row lies from the baseline, against how far baseline rows lie from each other.

    The scale is the median of the baseline rows' own distances to their ``k`` nearest other
    baseline rows (``own``, from :func:`baseline_knn`; computed when None); the threshold is the
    same figure's ``NOVELTY_QUANTILE``, so about 1% of clean rows lie above it.
    """
    if len(reference) < 3 or len(window) == 0:
        return Novelty(np.zeros(len(window)), math.inf, 0.0)
    own = baseline_knn(reference, seed, k) if own is None else own
    scale = float(np.median(own)) or 1.0
    scores = knn_distance(reference, window, k) / scale
    threshold = float(np.quantile(own / scale, NOVELTY_QUANTILE))
    return Novelty(scores, threshold, float((scores > threshold).mean()))


def nearest_examples(
    vectors: np.ndarray, scores: np.ndarray, threshold: float, n: int = EXAMPLES
) -> np.ndarray:
    """Rows representing the drifted group, nearest its centroid first.

    The group: the rows above ``threshold`` (at least the ``n`` most novel); the examples: its ``n``
    rows nearest the group's centroid.
    """
    if len(scores) == 0:
        return np.zeros(0, dtype=int)
    group = np.flatnonzero(scores > threshold)
    if len(group) < n:
        group = np.argsort(-scores, kind="stable")[: min(n, len(scores))]
    x = np.asarray(vectors, dtype=np.float64)[group]
    dist = np.linalg.norm(x - x.mean(axis=0), axis=1)
    return group[np.argsort(dist, kind="stable")[:n]]


# -- one window ---------------------------------------------------------------------------------------


def _strings(rows: Rows, column: str) -> np.ndarray | None:
    values = rows.meta.get(column)
    if values is None:
        return None
    return np.array(["" if x is None else str(x) for x in values], dtype=object)


def _labels(rows: Rows) -> np.ndarray:
    labels = _strings(rows, C.PREDICTION_LABEL)
    if labels is not None:
        return labels
    return np.array([str(i) for i in rows.probabilities.argmax(axis=1)], dtype=object)


def _features(rows: Rows) -> dict[str, np.ndarray]:
    return {f: np.asarray(rows.meta[f], dtype=np.float64) for f in C.FEATURES if f in rows.meta}


def explain_window(
    window_start: pd.Timestamp,
    label: str,
    reference: Rows,
    window: Rows,
    seed: int = 0,
    n_examples: int = EXAMPLES,
    own: np.ndarray | None = None,
) -> Explanation:
    """Why the window (its bounded sample ``window``) differs from the baseline (``reference``).

    ``own``: the baseline's own neighbour distances (:func:`baseline_knn`), to compute them once
    for many windows.
    """
    feats = feature_shifts(_features(reference), _features(window))
    classes = class_shifts(_labels(reference), reference.scores, _labels(window), window.scores)
    nov = novelty(reference.vectors, window.vectors, seed, own=own)
    rows = nearest_examples(window.vectors, nov.scores, nov.threshold, n_examples)
    labels, deg, links = _labels(window), _strings(window, C.DEGRADATION), _strings(window, C.IMAGE_LINK)
    keys = _strings(window, C.PREDICTION_ID)
    examples = [
        Example(
            row=int(i),
            label=str(labels[i]),
            confidence=float(window.scores[i]),
            degradation="" if deg is None else str(deg[i]),
            novelty=float(nov.scores[i]),
            link="" if links is None else str(links[i]),
            key="" if keys is None else str(keys[i]),
        )
        for i in rows
    ]
    out = Explanation(
        window_start=window_start,
        label=label,
        n_rows=len(window),
        features=feats,
        classes=classes,
        baseline_confidence=_mean_or_nan(np.asarray(reference.scores, dtype=np.float64)),
        window_confidence=_mean_or_nan(np.asarray(window.scores, dtype=np.float64)),
        novel_share=nov.share,
        novel_threshold=nov.threshold,
        examples=examples,
    )
    return replace(out, sentence=sentence(out))


# -- the sentence -------------------------------------------------------------------------------------


def named_features(features: Sequence[FeatureShift]) -> list[FeatureShift]:
    """The features that moved beyond chance (Bonferroni over the features) and by a visible amount."""
    level = NAMING_LEVEL / max(len(features), 1)
    return [f for f in features if f.p_value <= level and f.wasserstein >= MIN_FEATURE_EFFECT]


def named_classes(classes: Sequence[ClassShift]) -> list[ClassShift]:
    """The classes whose predicted share moved beyond chance (Bonferroni over the classes) and visibly."""
    level = NAMING_LEVEL / max(len(classes), 1)
    return [c for c in classes if c.p_value <= level and abs(c.share_change) >= MIN_SHARE_CHANGE]


def _feature_words(f: FeatureShift) -> str:
    if abs(f.smd) >= 0.5 * f.wasserstein:
        return f"{f.feature} {f.direction} by {abs(f.smd):.1f} baseline SDs"
    return f"{f.feature} changed in spread (Wasserstein {f.wasserstein:.1f} baseline SDs)"


def _counted(values: Sequence[str]) -> str:
    return ", ".join(f"{v} ×{n}" if n > 1 else v for v, n in Counter(values).most_common())


def sentence(e: Explanation) -> str:
    """One plain-language sentence: features, classes, confidence, the drifted group and its examples."""
    parts = []
    feats = named_features(e.features)[:2]
    parts.append(
        "; ".join(_feature_words(f) for f in feats) if feats else "no image feature moved beyond chance"
    )
    classes = named_classes(e.classes)[:2]
    if classes:
        parts.append(
            "; ".join(
                f"predicted {c.label} share {'rose' if c.share_change > 0 else 'fell'} from "
                f"{c.baseline_share:.0%} to {c.window_share:.0%}"
                for c in classes
            )
        )
    else:
        parts.append("the predicted class mix did not move beyond chance")
    if np.isfinite(e.baseline_confidence) and np.isfinite(e.window_confidence):
        b, w = e.baseline_confidence, e.window_confidence
        if round(b, 2) == round(w, 2):
            parts.append(f"mean confidence unchanged at {b:.2f}")
        else:
            parts.append(f"mean confidence {'fell' if w < b else 'rose'} from {b:.2f} to {w:.2f}")
    if np.isfinite(e.novel_share):
        parts.append(
            f"{e.novel_share:.0%} of the rows lie farther from the baseline than {NOVELTY_QUANTILE:.0%} of baseline rows"
        )
    if e.examples:
        known = [x.degradation for x in e.examples if x.degradation]
        deg = f" (ground truth: {_counted(known)})" if known else ""
        parts.append(f"nearest examples: {_counted([x.label for x in e.examples])}{deg}")
    return f"{e.label}: " + "; ".join(parts) + "."


# -- the flagged windows of a run ---------------------------------------------------------------------


def most_drifted(table: pd.DataFrame) -> int | None:
    """Position in ``table`` of the most drifted flagged window (None: no window flagged).

    Flagged windows ranked by the number of detectors that fired, then the detectors' combined
    evidence (the sum of -log10 p-values: the smallest p-value alone often sits at the resampling
    floor in every flagged window), then the centroid distance.
    """
    if not len(table) or "flagged" not in table:
        return None
    flagged = np.flatnonzero(table["flagged"].fillna(False).to_numpy(dtype=bool))
    if not len(flagged):
        return None
    fired = table[[c for c in table.columns if c.endswith("_fired")]].fillna(False).astype(bool).sum(axis=1)
    p = table[[c for c in table.columns if c.endswith("_p_value")]].astype(float).clip(lower=1e-300)
    evidence = (-np.log10(p)).sum(axis=1, skipna=True)
    dist = (
        table["centroid_distance"].astype(float).fillna(0.0) if "centroid_distance" in table else evidence * 0
    )
    order = sorted(
        flagged.tolist(),
        key=lambda i: (-int(fired.iloc[i]), -float(evidence.iloc[i]), -float(dist.iloc[i]), i),
    )
    return int(order[0])


def explain_flagged(
    reference: Rows,
    samples: Mapping[pd.Timestamp, Rows],
    table: pd.DataFrame,
    fmt: str = "%Y-%m-%d",
    seed: int = 0,
) -> list[Explanation]:
    """An explanation for each flagged window of ``table`` whose sample is in ``samples`` (by start)."""
    out: list[Explanation] = []
    own: np.ndarray | None = None
    for _, r in table[table["flagged"].fillna(False).astype(bool)].iterrows():
        start = pd.Timestamp(r["window_start"])
        window = samples.get(start)
        if window is None or len(window) == 0:
            continue
        if own is None and len(reference) >= 3:
            own = baseline_knn(reference.vectors, seed)
        out.append(explain_window(start, start.strftime(fmt), reference, window, seed, own=own))
    return out


def with_thumbnails(explanations: Sequence[Explanation], scope: ImageScope) -> list[Explanation]:
    """The explanations with their examples' thumbnails, read only from links inside ``scope``."""
    out = []
    for e in explanations:
        uris = load_thumbnails([x.link for x in e.examples], scope, keys=[x.key for x in e.examples]).uris
        out.append(
            replace(e, examples=[replace(x, thumbnail=u) for x, u in zip(e.examples, uris, strict=True)])
        )
    return out
