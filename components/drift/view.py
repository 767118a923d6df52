"""The UMAP view: projection, colourings, HDBSCAN clusters and thumbnails."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

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


def thumbnail_uri(data: bytes, size: int = 56, upscale: bool = False) -> str:
    """A small PNG data URI of an image file's bytes: at most ``size`` px, never blown up.

    A smaller image (Fashion-MNIST's 28 px) keeps its own pixels: the report scales it up on
    screen (``image-rendering: pixelated``), so the file holds a quarter of the pixels the same
    picture had blown up. ``upscale``: the old way (blown up by whole factors towards ``size``,
    nearest neighbour), kept for the report benchmark's baseline.
    """
    from PIL import Image

    img: Image.Image = Image.open(io.BytesIO(data))
    img = img.convert("L" if img.mode in ("L", "I", "F", "1") else "RGB")
    if max(img.size) > size:
        img.thumbnail((size, size))
    elif upscale and max(img.size) < size:
        factor = max(1, size // max(img.size))
        img = img.resize((img.size[0] * factor, img.size[1] * factor), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass(frozen=True)
class ImageScope:
    """Where the report may read images from: prepared artifacts' images files, local folders, store prefixes.

    ``image_files``: the ``images-<environment>.parquet`` files of the prepared folders (the images
    travel inside the artifact); a row's image is looked up there by its ``prediction_id`` first.
    Otherwise its link: a local link is resolved (``..`` and symlinks followed) and must lie inside
    one of ``folders`` (themselves resolved); a bucket link (``gs://``, ``s3://``, ``minio://``, or
    an https URL that :func:`~components.common.storage.uri_from_link` maps to one) must start with
    one of ``prefixes`` and hold no ``.`` or ``..`` segment. Anything else is refused, never read.
    """

    folders: tuple[Path, ...] = ()
    prefixes: tuple[str, ...] = ()  # "gs://bucket/prefix/", always ending with "/"
    image_files: tuple[Path, ...] = ()  # images files inside the prepared folders (never a symlink)

    @classmethod
    def of(cls, roots: Iterable[str], artifacts: Iterable[str | Path] = ()) -> ImageScope:
        """The scope of ``roots`` (folders, bucket URIs or links) and the images files of ``artifacts``.

        Empty roots and the filesystem root are skipped; ``artifacts`` are prepared folders, whose
        ``schema.prepared_images_file`` files are taken when they are regular files, not symlinks.
        """
        folders: list[Path] = []
        prefixes: list[str] = []
        for root in roots:
            uri = _as_uri(root) if root else None
            if uri is None:
                continue
            remote = _split_remote(uri)
            if remote is not None:
                scheme, bucket, key = remote
                if ".." in key.split("/"):
                    continue
                key = key.strip("/")
                prefixes.append(f"{scheme}://{bucket}/" + (f"{key}/" if key else ""))
            elif "://" not in uri:
                path = Path(uri).resolve()
                if path != Path(path.anchor):  # the filesystem root is no image store
                    folders.append(path)
        files = [
            Path(folder) / schema.prepared_images_file(env)
            for folder in dict.fromkeys(str(a) for a in artifacts if str(a))
            for env in schema.SPLITS
        ]
        image_files = [f for f in files if not f.is_symlink() and f.is_file()]
        return cls(tuple(dict.fromkeys(folders)), tuple(dict.fromkeys(prefixes)), tuple(image_files))

    def allows(self, link: str) -> bool:
        """Whether ``link`` names an image inside the scope (False for anything unclear)."""
        uri = _as_uri(link) if link else None
        if uri is None:
            return False
        remote = _split_remote(uri)
        if remote is not None:
            segments = remote[2].split("/")
            if ".." in segments or "." in segments:
                return False
            return any(uri.startswith(p) for p in self.prefixes)
        if "://" in uri:
            return False
        try:
            path = Path(uri).resolve()
        except (OSError, RuntimeError, ValueError):
            return False
        return any(path.is_relative_to(f) for f in self.folders)


def _as_uri(link: str) -> str | None:
    """A link as a bucket URI or a local path (None: an URL no store of ours wrote).

    A bucket URI is put in one form through the link it would have (``minio://b/k`` and
    ``s3://b/k`` are the same object when both schemes use one endpoint), so a store given in
    one form and links written in the other still match.
    """
    from components.common import storage

    try:
        if link.startswith(("http://", "https://")):
            link = storage.uri_from_link(link)
        if storage.is_remote(link):
            return storage.uri_from_link(storage.link_for(link))
    except ValueError:
        return None if link.startswith(("http://", "https://")) else link
    return link


def _split_remote(uri: str) -> tuple[str, str, str] | None:
    """``(scheme, bucket, key)`` of a bucket URI; None for a local path."""
    from components.common import storage

    if not storage.is_remote(uri):
        return None
    scheme, rest = uri.split("://", 1)
    bucket, _, key = rest.partition("/")
    return scheme, bucket, key


@dataclass(frozen=True)
class Thumbnails:
    """Thumbnails of the view's points ("" where none) and why some are missing."""

    uris: list[str]  # data URIs, one per link
    unreadable: int  # links missing, unreachable or not an image
    outside: int  # links outside the image scope: refused, never read
    from_artifact: int = 0  # read from the prepared folders' images files (by prediction_id)


def read_images(files: Iterable[Path], keys: Iterable[str]) -> dict[str, bytes]:
    """The image bytes of each of ``keys`` (prediction IDs) found in the images files ``files``.

    Row group by row group: the ID column first, the image column only of the row groups holding a
    key, so memory stays bounded by one row group. A file that cannot be read (corrupt, another
    schema) is skipped: its rows fall back to their links.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    cols = schema.PreparedImageColumns
    remaining = {k for k in keys if k}
    found: dict[str, bytes] = {}
    for path in files:
        if not remaining:
            break
        try:
            pf = pq.ParquetFile(path, pre_buffer=False)
            if not {cols.PREDICTION_ID, cols.IMAGE} <= set(pf.schema_arrow.names):
                continue
            for group in range(pf.num_row_groups):
                ids = pf.read_row_group(group, columns=[cols.PREDICTION_ID]).column(0)
                hit = pc.fill_null(pc.is_in(ids, value_set=pa.array(sorted(remaining), pa.string())), False)
                idx = np.flatnonzero(np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool))
                if not len(idx):
                    continue
                images = pf.read_row_group(group, columns=[cols.IMAGE]).column(0).take(pa.array(idx))
                for key, data in zip(ids.take(pa.array(idx)).to_pylist(), images.to_pylist(), strict=True):
                    if data is not None and key in remaining:
                        found[key] = data
                        remaining.discard(key)
                if not remaining:
                    break
        except (OSError, ValueError, pa.ArrowException):  # a damaged file: its rows fall back to links
            continue
    return found


def load_thumbnails(
    links: list[str], scope: ImageScope, size: int = 56, keys: list[str] | None = None
) -> Thumbnails:
    """Thumbnails of each row: from the scope's images files by ``keys`` (prediction IDs), else its link.

    A link is read only when ``scope`` allows it; "" (and counted) where refused or unreadable.
    """
    from components.common import storage

    inside = read_images(scope.image_files, keys) if keys is not None and scope.image_files else {}
    out: list[str] = []
    unreadable = outside = from_artifact = 0
    for i, link in enumerate(links):
        data = inside.get(keys[i]) if keys is not None and i < len(keys) else None
        if data is not None:
            try:
                out.append(thumbnail_uri(data, size))
                from_artifact += 1
            except Exception:  # noqa: BLE001 - a damaged image must not stop the report
                out.append("")
                unreadable += 1
            continue
        if not link:
            out.append("")
            unreadable += 1
            continue
        if not scope.allows(link):
            out.append("")
            outside += 1
            continue
        try:
            out.append(thumbnail_uri(storage.read_bytes(link), size))
        except Exception:  # noqa: BLE001 - a missing image must not stop the report
            out.append("")
            unreadable += 1
    return Thumbnails(out, unreadable, outside, from_artifact)
