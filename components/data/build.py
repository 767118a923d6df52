"""Build the data set: training / validation / production splits with a degraded window.

``build_dataset(config, output_dir, card_path, grid_path)`` is the stage: it reads the
source (see :mod:`components.data.sources`), samples the three splits, stamps times,
degrades a share of the production images inside a contiguous window of days, and
writes a ``datasets.DatasetDict`` folder, a Markdown data card and a PNG sample grid.
The same configuration (seed included) gives byte-for-byte the same files.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image, ImageFilter
from tqdm.auto import tqdm

from components.common import schema
from components.common.files import replace_dir, tmp_sibling, write_bytes_atomic
from components.common.schema import DatasetColumns as C
from components.data.config import ConfigError, DataConfig
from components.data.sources import Source, load_source

__all__ = ["ConfigError", "DataConfig", "DataSummary", "build_dataset", "degrade", "make_splits"]

SECONDS_PER_DAY = 86_400
DEGRADED_KINDS = (schema.DEGRADATION_ROTATE, schema.DEGRADATION_BLUR, schema.DEGRADATION_BOTH)


@dataclass
class SplitRows:
    """The rows of one split before encoding."""

    images: list[np.ndarray]
    labels: np.ndarray
    seconds: np.ndarray  # Unix seconds, UTC
    image_ids: list[str]
    degradation: list[str]


@dataclass
class DataSummary:
    """What a run produced; :meth:`line` is the one-line summary printed at the end."""

    output_dir: str
    card_path: str | None
    grid_path: str | None
    source: str
    rows: dict[str, int]
    degraded: dict[str, int]
    window: tuple[str, str]
    kept_aside: int
    per_class: dict[str, dict[str, int]] = field(default_factory=dict)
    per_day: list[dict] = field(default_factory=list)

    def line(self) -> str:
        """``data: training=... validation=... production=...; production degraded ...; written to ...``."""
        rows = " ".join(f"{k}={v}" for k, v in self.rows.items())
        deg = sum(v for k, v in self.degraded.items() if k != schema.DEGRADATION_NONE)
        return (
            f"data: {rows}; production degraded {deg} in {self.window[0]}..{self.window[1]}; "
            f"kept aside {self.kept_aside}; written to {self.output_dir}"
        )


# --- degradation -------------------------------------------------------------------------------


def degrade(image: np.ndarray, kind: str, angle: float, radius: float) -> np.ndarray:
    """Rotate (bilinear, black fill) and/or blur (Gaussian) one greyscale image."""
    if kind == schema.DEGRADATION_NONE:
        return image
    img = Image.fromarray(image, mode="L")
    if kind in (schema.DEGRADATION_ROTATE, schema.DEGRADATION_BOTH):
        img = img.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0)
    if kind in (schema.DEGRADATION_BLUR, schema.DEGRADATION_BOTH):
        img = img.filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(img)


def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    sample, times, damage = np.random.SeedSequence(seed).spawn(3)
    return np.random.default_rng(sample), np.random.default_rng(times), np.random.default_rng(damage)


def check_sizes(config: DataConfig, source: Source) -> None:
    """A ConfigError when the split sizes ask for more rows than the source's parts hold."""
    n_train, n_test = len(source.train), len(source.test)
    if config.validation_part == "train" and config.training_size + config.validation_size > n_train:
        raise ConfigError(
            f"training_size={config.training_size} + validation_size={config.validation_size} = "
            f"{config.training_size + config.validation_size}: larger than the {n_train} usable rows of "
            f"the source's train part ({source.train.origin}); expected at most {n_train} together"
        )
    if config.training_size > n_train:
        raise ConfigError(
            f"training_size={config.training_size}: larger than the {n_train} usable rows of the "
            f"source's train part ({source.train.origin}); expected at most {n_train}"
        )
    if config.production_size > n_test:
        raise ConfigError(
            f"production_size={config.production_size}: larger than the {n_test} usable rows of the "
            f"source's test part ({source.test.origin}); expected at most {n_test}"
        )
    if config.validation_part == "test" and config.production_size + config.validation_size > n_test:
        raise ConfigError(
            f"production_size={config.production_size} + validation_size={config.validation_size} = "
            f"{config.production_size + config.validation_size}: larger than the {n_test} usable rows "
            f"of the source's test part ({source.test.origin}), which both come from with "
            f"validation_part='test'; expected at most {n_test} together, or validation_part='train'"
        )


def make_splits(config: DataConfig, source: Source) -> dict[str, SplitRows]:
    """Sample the three splits, stamp their times and degrade the production window.

    Validation rows come from the part ``validation_part`` names; from the test part they never
    overlap production (one permutation: production takes its head, validation the rows after it).
    """
    check_sizes(config, source)
    rng_sample, rng_time, rng_damage = _rngs(config.seed)
    start = int(config.start.timestamp())
    days = config.production_days

    perm = rng_sample.permutation(len(source.train))
    test_perm = rng_sample.permutation(len(source.test))
    n_prod, n_val = config.production_size, config.validation_size
    validation = (
        (source.test, test_perm[n_prod : n_prod + n_val])
        if config.validation_part == "test"
        else (source.train, perm[config.training_size : config.training_size + n_val])
    )
    picks = {
        schema.TRAINING: (source.train, perm[: config.training_size]),
        schema.VALIDATION: validation,
        schema.PRODUCTION: (source.test, test_perm[:n_prod]),
    }

    splits: dict[str, SplitRows] = {}
    for name, (part, rows) in picks.items():
        n = len(rows)
        if name == schema.PRODUCTION:
            counts = np.full(days, n // days)
            counts[: n % days] += 1
            day = np.repeat(np.arange(days), counts)
            seconds = start + day * SECONDS_PER_DAY + rng_time.integers(0, SECONDS_PER_DAY, n)
        else:
            # Clean rows stamped over the same number of days just before production.
            seconds = start - days * SECONDS_PER_DAY + rng_time.integers(0, days * SECONDS_PER_DAY, n)
        order = np.argsort(seconds, kind="stable")
        rows, seconds = rows[order], seconds[order]
        splits[name] = SplitRows(
            images=[part.images[i] for i in rows],
            labels=part.labels[rows].astype(np.int64),
            seconds=seconds.astype(np.int64),
            image_ids=[f"{part.name}-{int(part.index[i]):05d}" for i in rows],
            degradation=[schema.DEGRADATION_NONE] * n,
        )

    prod = splits[schema.PRODUCTION]
    w0, w1 = (int(t.timestamp()) for t in config.window)
    in_window = np.flatnonzero((prod.seconds >= w0) & (prod.seconds < w1))
    n_degraded = int(round(config.degraded_share * len(in_window)))
    chosen = np.sort(rng_damage.choice(in_window, size=n_degraded, replace=False))
    kinds = rng_damage.integers(0, len(DEGRADED_KINDS), n_degraded)
    angles = rng_damage.uniform(config.rotation_min, config.rotation_max, n_degraded)
    angles *= rng_damage.choice(np.array([-1.0, 1.0]), n_degraded)
    radii = rng_damage.uniform(config.blur_min, config.blur_max, n_degraded)
    for j, row in enumerate(tqdm(chosen, desc="degrade production", unit="img", leave=False)):
        kind = DEGRADED_KINDS[kinds[j]]
        prod.images[row] = degrade(prod.images[row], kind, float(angles[j]), float(radii[j]))
        prod.degradation[row] = kind
    return splits


# --- encoding and writing ----------------------------------------------------------------------


def features():
    """The ``datasets.Features`` of every split (the column contract of ``schema.DatasetColumns``)."""
    import datasets

    return datasets.Features(
        {
            C.IMAGE: datasets.Image(),
            C.LABEL: datasets.ClassLabel(names=list(schema.CLASS_NAMES)),
            C.PREDICTION_TS: datasets.Value(str(schema.TIMESTAMP_TYPE)),
            C.IMAGE_ID: datasets.Value("string"),
            C.URL: datasets.Value("string"),
            C.DEGRADATION: datasets.Value("string"),
        }
    )


def png_bytes(image: np.ndarray) -> bytes:
    """One greyscale image as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def to_table(name: str, rows: SplitRows, feats) -> pa.Table:
    """One split's rows as an Arrow table with the schema of ``feats`` (images PNG-encoded)."""
    pngs = [png_bytes(img) for img in tqdm(rows.images, desc=f"encode {name}", unit="img", leave=False)]
    n = len(pngs)
    image = pa.StructArray.from_arrays(
        [pa.array(pngs, pa.binary()), pa.array([None] * n, pa.string())], names=["bytes", "path"]
    )
    columns = {
        C.IMAGE: image,
        C.LABEL: pa.array(rows.labels, pa.int64()),
        C.PREDICTION_TS: pa.array(rows.seconds * 1_000_000, pa.int64()).cast(schema.TIMESTAMP_TYPE),
        C.IMAGE_ID: pa.array(rows.image_ids, pa.string()),
        C.URL: pa.array([""] * n, pa.string()),
        C.DEGRADATION: pa.array(rows.degradation, pa.string()),
    }
    return pa.table([columns[c] for c in C.ALL], schema=feats.arrow_schema)


def to_dataset_dict(splits: dict[str, SplitRows], config: DataConfig):
    """The three splits as a ``datasets.DatasetDict``, fingerprinted from the parameters (reproducible)."""
    import datasets

    feats = features()
    out = {}
    for name in schema.SPLITS:
        table = to_table(name, splits[name], feats)
        # A fingerprint derived from the content, so that state.json is reproducible too.
        digest = hashlib.sha256(
            json.dumps([name, config.parameters(), table.num_rows], sort_keys=True, default=str).encode()
        ).hexdigest()[:16]
        info = datasets.DatasetInfo(
            description="Fashion-MNIST with a window of degraded production images (components.data)",
            features=feats,
        )
        out[name] = datasets.Dataset(table, info=info, split=datasets.NamedSplit(name), fingerprint=digest)
    return datasets.DatasetDict(out)


def _check_output(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and not overwrite:
        if output_dir.is_dir() and not any(output_dir.iterdir()):
            return
        raise FileExistsError(f"{output_dir}: already exists; expected a new path (or pass overwrite)")


def build_dataset(
    config: DataConfig | None = None,
    output_dir: str | Path = "data-out/dataset",
    card_path: str | Path | None = None,
    grid_path: str | Path | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> DataSummary:
    """Build the data set and write it; the dataset folder appears last, complete or not at all."""
    from components.data.card import render_card, sample_grid_png

    config = config or DataConfig()
    output_dir = Path(output_dir)
    _check_output(output_dir, overwrite)
    source = load_source(
        config.source,
        config.hub_image_column,
        config.hub_label_column,
        config.hub_train_split,
        config.hub_test_split,
    )
    splits = make_splits(config, source)
    summary = summarize(config, source, splits, output_dir, card_path, grid_path)
    grid = sample_grid_png(splits[schema.PRODUCTION], config.seed)
    card = render_card(config, source, summary, grid)

    dd = to_dataset_dict(splits, config)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(output_dir)
    try:
        dd.save_to_disk(str(tmp))
        if grid_path is not None:
            write_bytes_atomic(grid_path, grid)
        if card_path is not None:
            write_bytes_atomic(card_path, card.encode())
        replace_dir(tmp, output_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    if not quiet:
        print(summary.line(), flush=True)
    return summary


def summarize(config, source, splits, output_dir, card_path, grid_path) -> DataSummary:
    """Rows per split, class, day and degradation of the built splits."""
    rows = {name: len(s.labels) for name, s in splits.items()}
    degraded = {k: 0 for k in schema.DEGRADATIONS}
    for kind in splits[schema.PRODUCTION].degradation:
        degraded[kind] += 1
    per_class = {
        name: {schema.CLASS_NAMES[c]: int((s.labels == c).sum()) for c in range(schema.NUM_CLASSES)}
        for name, s in splits.items()
    }
    prod = splits[schema.PRODUCTION]
    start = int(config.start.timestamp())
    day = (prod.seconds - start) // SECONDS_PER_DAY
    kinds = np.asarray(prod.degradation)
    per_day = []
    for d in range(config.production_days):
        mask = day == d
        entry = {"date": (config.start + timedelta(days=d)).date().isoformat(), "rows": int(mask.sum())}
        for k in schema.DEGRADATIONS:
            entry[k] = int((kinds[mask] == k).sum())
        per_day.append(entry)
    w0, w1 = config.window
    return DataSummary(
        output_dir=str(output_dir),
        card_path=None if card_path is None else str(card_path),
        grid_path=None if grid_path is None else str(grid_path),
        source=source.description,
        rows=rows,
        degraded=degraded,
        window=(w0.date().isoformat(), (w1 - timedelta(days=1)).date().isoformat()),
        kept_aside=len(source.train.rejected) + len(source.test.rejected),
        per_class=per_class,
        per_day=per_day,
    )
