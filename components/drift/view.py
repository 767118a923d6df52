"""The UMAP view: projection, colourings, HDBSCAN clusters and thumbnails."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np

from components.common import schema

BASELINE = "baseline"
PRODUCTION = "production"
PROJECTIONS = ("umap", "pca")


@dataclass(frozen=True)
class Colouring:
    """One way to colour the points: categorical (``categories`` in order) or continuous."""

    name: str
    values: np.ndarray  # strings for categorical, floats for continuous
    categories: tuple[str, ...] = ()

    @property
    def categorical(self) -> bool:
        """Whether the colouring has categories (else its values are continuous)."""
        return bool(self.categories)


def project(
    vectors: np.ndarray, n_components: int, method: str = "umap", epochs: int | None = None, seed: int = 0
) -> np.ndarray:
    """Project ``vectors`` to ``n_components`` dimensions (UMAP, or PCA for a quick look)."""
    if method not in PROJECTIONS:
        raise ValueError(f"projection={method!r}: expected one of {', '.join(PROJECTIONS)}")
    n = len(vectors)
    if n < n_components + 2:
        raise ValueError(f"projection: {n} points, need at least {n_components + 2}")
    x = np.asarray(vectors, dtype=np.float32)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=n_components, random_state=seed).fit_transform(x).astype(np.float32)
    import umap

    reducer = umap.UMAP(
        n_components=n_components,
        n_neighbors=min(15, n - 1),
        min_dist=0.1,
        n_epochs=epochs,
        random_state=seed,
        n_jobs=1,  # a seed makes UMAP single-threaded anyway; say so to keep it quiet
        init="spectral" if n > n_components + 10 else "random",
    )
    return reducer.fit_transform(x).astype(np.float32)


def colourings(
    dataset: np.ndarray,
    predicted: np.ndarray,
    actual: np.ndarray,
    scores: np.ndarray,
    features: dict[str, np.ndarray],
    positive_class: str,
    degradation: np.ndarray | None = None,
) -> list[Colouring]:
    """Every colouring of the view, with fixed category orders."""
    classes = tuple(schema.CLASS_NAMES)
    if positive_class not in classes:
        raise ValueError(f"positive_class={positive_class!r}: expected one of {', '.join(classes)}")
    predicted = predicted.astype(str)
    actual = actual.astype(str)
    correct = np.where(predicted == actual, "correct", "wrong")
    pp, ap = predicted == positive_class, actual == positive_class
    confusion = np.select([pp & ap, ~pp & ~ap, pp & ~ap], ["TP", "TN", "FP"], "FN")
    extra = sorted((set(predicted) | set(actual)) - set(classes))
    out = [
        Colouring("dataset", dataset.astype(str), (BASELINE, PRODUCTION)),
        Colouring("prediction label", predicted, classes + tuple(c for c in extra if c in set(predicted))),
        Colouring("actual label", actual, classes + tuple(c for c in extra if c in set(actual))),
        Colouring("correctness", correct, ("correct", "wrong")),
        Colouring(f"confusion ({positive_class} positive)", confusion, ("TP", "TN", "FP", "FN")),
    ]
    for name, vals in features.items():
        out.append(Colouring(name, np.asarray(vals, dtype=np.float64)))
    out.append(Colouring("prediction score", np.asarray(scores, dtype=np.float64)))
    if degradation is not None:
        deg = degradation.astype(str)
        cats = tuple(c for c in schema.DEGRADATIONS if c in set(deg)) + tuple(
            sorted(set(deg) - set(schema.DEGRADATIONS))
        )
        out.append(Colouring("degradation (ground truth)", deg, cats))
    return out


@dataclass(frozen=True)
class Cluster:
    """An HDBSCAN cluster of the view, with how much more production it holds than the whole sample."""

    label: int
    size: int
    production_share: float  # fraction of the cluster's points that are production
    excess: float  # production_share minus the production share of the whole sample
    members: np.ndarray  # point indices


def clusters(
    coords: np.ndarray, is_production: np.ndarray, min_cluster_size: int = 15
) -> tuple[np.ndarray, list[Cluster]]:
    """HDBSCAN on the projected points; clusters sorted by how much production outweighs baseline."""
    from sklearn.cluster import HDBSCAN

    n = len(coords)
    if n < max(min_cluster_size, 3):
        return np.full(n, -1), []
    labels = HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit_predict(coords)
    overall = float(is_production.mean()) if n else 0.0
    found = []
    for lab in sorted(set(labels.tolist()) - {-1}):
        members = np.flatnonzero(labels == lab)
        share = float(is_production[members].mean())
        found.append(Cluster(int(lab), len(members), share, share - overall, members))
    found.sort(key=lambda c: (-c.excess, -c.size))
    return labels, found


def thumbnail_uri(data: bytes, size: int = 56) -> str:
    """A small PNG data URI of an image file's bytes."""
    from PIL import Image

    img: Image.Image = Image.open(io.BytesIO(data))
    img = img.convert("L" if img.mode in ("L", "I", "F", "1") else "RGB")
    if max(img.size) > size:
        img.thumbnail((size, size))
    elif max(img.size) < size:
        factor = max(1, size // max(img.size))
        img = img.resize((img.size[0] * factor, img.size[1] * factor), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def load_thumbnails(links: list[str], size: int = 56) -> tuple[list[str], int]:
    """Thumbnails of each link ("" where it cannot be read) and how many failed."""
    from components.common import storage

    out, failed = [], 0
    for link in links:
        if not link:
            out.append("")
            failed += 1
            continue
        try:
            out.append(thumbnail_uri(storage.read_bytes(link), size))
        except Exception:  # noqa: BLE001 - a missing image must not stop the report
            out.append("")
            failed += 1
    return out, failed
