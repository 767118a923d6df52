"""Predictions, scores, probabilities, embeddings and image features for every row of a split.

Fast and bounded in memory on a split of any size:

- the data set's Arrow table is memory-mapped and read one batch at a time (images stay PNG
  bytes until decoded);
- a background thread decodes the next batch (torchvision's C++ PNG decoder), computes the image
  features and runs the evaluation transform on the whole batch at once, while the main thread
  runs the model on the previous one;
- the model runs under ``torch.inference_mode`` in channels-last layout; only the last hidden
  state is kept (for ResNet-like models the pooled output *is* its spatial mean, and the
  classifier runs on it, so there is a single forward pass); reduced precision only on a GPU;
- each batch is appended to the Parquet file as it is done, into a temporary folder
  ``.<output>.tmp-<pid>`` that replaces the output when complete (the old output is renamed
  aside first and deleted last); such folders left by killed runs are removed by the next run.

The model folder is verified before use (:func:`components.common.model_folder.verify_model_folder`):
its label set must be this setup's class list and its weights must hash to the ``model_version``
its training summary claims, else the run fails at once, naming both.

An image that does not decode is counted, listed in ``failures.parquet`` and in the summary, and
skipped; the other rows of its batch go on.

Production rows may have no label yet (``schema.NO_LABEL``, -1, as the ingest stage writes): they
are embedded and keep -1; training and validation rows must be labelled. When a split carries what
the serving system logged (``schema.ServedColumns``: prediction id, served label and score), those
columns are carried into the output (``schema.EMBED_SERVED_ARROW_SCHEMA``; null in splits without
them); a data set without them gives ``schema.EMBED_ARROW_SCHEMA`` as before.
"""

from __future__ import annotations

import itertools
import os
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from components.common import schema
from components.common.dataset_folder import load_splits
from components.common.device import require_cuda, trained_for_gpu, wants_cuda
from components.common.files import remove_stale_temporaries, replace_dir, tmp_sibling
from components.common.inference import (  # image_features, LoadedModel: re-exported (tests, benchmarks)
    Batch,
    LoadedModel,  # noqa: F401
    decode_batch,
    image_features,  # noqa: F401
    load_model,
)
from components.common.model_folder import check_model_folder
from components.common.preprocess import eval_transform
from components.common.schema import DatasetColumns as C
from components.common.schema import EmbedColumns as E
from components.common.threads import default_threads
from components.embed.config import EmbedConfig, check_shard

REQUIRED_COLUMNS = (C.IMAGE, C.LABEL, C.IMAGE_ID, C.PREDICTION_TS, C.DEGRADATION)
# Splits whose rows may have no label yet (schema.NO_LABEL): production only.
UNLABELLED_SPLITS = (schema.PRODUCTION,)
# Optional columns of a split carried into the output when present (ServedColumns of an ingested batch).
SERVED_COLUMNS = E.SERVED
FAILURES_SCHEMA = pa.schema(
    [("image_id", pa.string()), ("split", pa.string()), ("row", pa.int64()), ("error", pa.string())]
)


def shard_bounds(n_rows: int, shard_index: int, num_shards: int) -> tuple[int, int]:
    """Contiguous slice [start, end) of ``n_rows`` for one shard."""
    check_shard(shard_index, num_shards)
    return n_rows * shard_index // num_shards, n_rows * (shard_index + 1) // num_shards


class _BatchSource(torch.utils.data.Dataset):
    """Batch ``i`` of one split's slice, read and decoded where it is asked for (a worker process)."""

    def __init__(
        self,
        arrow,
        start: int,
        end: int,
        batch_size: int,
        split: str,
        transform,
        extra: tuple[str, ...] = (),
        fallback=None,
    ) -> None:
        """``transform`` None: batches keep their uint8 pixels (``fallback`` transforms mixed-size batches)."""
        self.arrow, self.start, self.end, self.batch_size = arrow, start, end, batch_size
        self.split, self.transform, self.extra, self.fallback = split, transform, extra, fallback

    def __len__(self) -> int:
        return -(-(self.end - self.start) // self.batch_size)

    def __getitem__(self, i: int) -> Batch:
        b0 = self.start + i * self.batch_size
        columns = [*REQUIRED_COLUMNS, *self.extra]
        table = self.arrow[b0 : min(self.end, b0 + self.batch_size)].select(columns)
        if self.transform is None:  # the model's device transforms: hand over uint8 pixels
            try:
                return decode_batch(table, self.split, b0, _KeepPixels())
            except _MixedShapes:  # images of several sizes in this batch: transformed here instead
                return decode_batch(table, self.split, b0, self.fallback)
        return decode_batch(table, self.split, b0, self.transform)


class _MixedShapes(Exception):
    """A batch holds images of several sizes: they cannot travel as one uint8 tensor."""


class _KeepPixels:
    """The "transform" handed to ``decode_batch`` when the model's device transforms: the pixels as decoded.

    ``decode_batch`` calls it once per image size; a second call means a batch of mixed sizes,
    which is decoded again with the evaluation transform on CPU (rare: Fashion-MNIST is 28 x 28).
    """

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, stack: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > 1:
            raise _MixedShapes
        return stack


def _as_is(batch: Batch) -> Batch:
    return batch


def default_decode_workers(device: torch.device) -> int:
    """Decoding processes: none on CPU (a background thread decodes), up to 4 next to a GPU.

    Measured on the shared 2-core machine: one worker process embedded 4,000 rows in 1.56 to
    1.67 s, the decode thread in 1.42 to 1.45 s (the second core was busy with other jobs and the
    process adds inter-process copies). Next to a GPU the model is fast and decoding is the limit,
    so several processes pay off there.
    """
    if device.type == "cuda":
        return max(1, min(4, (os.cpu_count() or 1) // 2))
    return 0


def iter_batches(source: _BatchSource, workers: int) -> Iterator[Batch]:
    """Batches in order, decoded ahead of the model by a thread (``workers=0``) or by processes."""
    if workers == 0:
        return _prefetch(source[i] for i in range(len(source)))
    loader = torch.utils.data.DataLoader(
        source,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        # torch types collate_fn for batched lists; with batch_size=None it gets one Batch at a time
        collate_fn=_as_is,  # type: ignore[arg-type]
        prefetch_factor=2,
    )
    return iter(loader)


def _prefetch(it: Iterator, depth: int = 2) -> Iterator:
    """Run an iterator in a background thread, ``depth`` items ahead."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as e:  # handed to the consumer
            q.put(e)

    t = threading.Thread(target=work, daemon=True, name="embed-decode")
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


# ------------------------------------------------------------------------------- the forward pass


@dataclass
class _InFlight:
    """A batch whose forward pass is queued on the device; :meth:`result` waits for its outputs."""

    batch: Batch
    logits: torch.Tensor
    embedding: torch.Tensor
    event: torch.cuda.Event | None = None

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, embedding) on the CPU, float32, once the device has written them."""
        if self.event is not None:
            self.event.synchronize()
        return self.logits, self.embedding


class _Runner:
    """Runs batches through the model: transform on the device if asked, compiled if asked, copies queued.

    - pixels arriving as uint8 (``transform_device`` model) go to the device as they are (a
      28 x 28 batch of 256 is 0.6 MB instead of 154 MB of float32 at 224 px) and are resized,
      cropped and normalised there, with the same transform;
    - ``compile_mode`` other than none: ``torch.compile`` of the forward pass, each batch padded to
      ``batch_size`` so that one compiled graph (one CUDA graph with reduce-overhead) serves all;
    - on CUDA the outputs are copied into pinned host memory without waiting; the caller builds and
      writes the previous batch's table meanwhile and waits only when it needs these outputs.
    """

    def __init__(self, lm: LoadedModel, transform, compile_mode: str, batch_size: int) -> None:
        self.lm, self.transform, self.batch_size = lm, transform, batch_size
        self.cuda = lm.device.type == "cuda"
        self.compile_mode = compile_mode
        if compile_mode == "none":
            self.forward = lm.forward
        else:
            mode = None if compile_mode == "default" else compile_mode
            self.forward = torch.compile(lm.forward, mode=mode, dynamic=False)

    def launch(self, batch: Batch) -> _InFlight:
        """Queue ``batch``'s forward pass; outputs of its decoded rows only (padding dropped)."""
        pv = batch.pixel_values
        assert pv is not None, "only a batch with decoded rows is run"
        n = pv.shape[0]
        with torch.inference_mode():
            x = pv.to(self.lm.device, non_blocking=True)
            if x.dtype == torch.uint8:  # decoded pixels: the evaluation transform runs here
                x = self.transform(x)
            if self.compile_mode != "none" and n < self.batch_size:
                x = torch.cat([x, x.new_zeros((self.batch_size - n, *x.shape[1:]))])
            if self.compile_mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            logits, emb = self.forward(x)
            logits, emb = logits[:n], emb[:n]
            if not self.cuda:
                return _InFlight(batch, logits, emb)
            host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in (logits, emb)]
            for h, t in zip(host, (logits, emb), strict=True):
                h.copy_(t, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        return _InFlight(batch, host[0], host[1], event)


# ---------------------------------------------------------------------------------------- stage


@dataclass
class SplitStats:
    """Rows of one split (this shard), how many were embedded and failed, and the time taken."""

    split: str
    rows: int
    embedded: int = 0
    failed: int = 0
    seconds: float = 0.0
    unlabelled: int = 0  # rows embedded with label schema.NO_LABEL (no label yet)
    served: int = 0  # rows embedded with a served label


@dataclass
class EmbedResult:
    """What :func:`embed_dataset` wrote: the folder, the model version, per-split stats, failures."""

    output_dir: Path
    model_version: str
    stats: list[SplitStats]
    failures: list[dict]
    seconds: float
    embedding_dim: int

    @property
    def rows(self) -> int:
        """Rows embedded over all splits."""
        return sum(s.embedded for s in self.stats)

    @property
    def images_per_second(self) -> float:
        """Images read (embedded or failed) per second of the whole run."""
        return sum(s.embedded + s.failed for s in self.stats) / self.seconds if self.seconds else 0.0


def open_splits(dataset_dir: Path, names: list[str]) -> dict:
    """Check the data set for the splits embed reads: present, non-empty, the columns, labels in range.

    Labels are class indices, or ``schema.NO_LABEL`` (-1, no label yet) in production rows only.
    """
    return load_splits(
        dataset_dir, names, REQUIRED_COLUMNS, "there is nothing to embed", unlabelled_splits=UNLABELLED_SPLITS
    )


def served_columns(ds) -> tuple[str, ...]:
    """The optional served columns (``EmbedColumns.SERVED``) that one split has, in contract order."""
    return tuple(c for c in SERVED_COLUMNS if c in ds.column_names)


def output_schema(data: dict) -> pa.Schema:
    """``EMBED_SERVED_ARROW_SCHEMA`` when any split carries a served column, else ``EMBED_ARROW_SCHEMA``."""
    if any(served_columns(ds) for ds in data.values()):
        return schema.EMBED_SERVED_ARROW_SCHEMA
    return schema.EMBED_ARROW_SCHEMA


def _output_table(
    batch: Batch,
    split: str,
    logits: torch.Tensor,
    emb: torch.Tensor,
    version: str,
    arrow_schema: pa.Schema = schema.EMBED_ARROW_SCHEMA,
) -> pa.Table:
    probs = torch.softmax(logits, dim=-1)
    score, pred = probs.max(dim=-1)
    n, k = probs.shape
    d = emb.shape[1]
    t = batch.table
    features = batch.features
    assert features is not None, "only a batch with decoded rows has outputs"
    cols = {
        E.IMAGE_ID: t.column(C.IMAGE_ID).cast(pa.string()),
        E.SPLIT: pa.array([split] * n, pa.string()),
        E.LABEL: t.column(C.LABEL).cast(pa.int64()),
        E.PREDICTION: pa.array(pred.numpy().astype(np.int64)),
        E.PREDICTION_SCORE: pa.array(score.numpy().astype(np.float32)),
        E.PROBABILITIES: pa.ListArray.from_arrays(
            pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32)), pa.array(probs.numpy().reshape(-1))
        ),
        E.EMBEDDING: pa.ListArray.from_arrays(
            pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32)), pa.array(emb.numpy().reshape(-1))
        ),
        E.PREDICTION_TS: t.column(C.PREDICTION_TS).cast(schema.TIMESTAMP_TYPE),
        E.DEGRADATION: t.column(C.DEGRADATION).cast(pa.string()),
        E.MODEL_VERSION: pa.array([version] * n, pa.string()),
        E.BRIGHTNESS: pa.array(features[0]),
        E.CONTRAST: pa.array(features[1]),
        E.SHARPNESS: pa.array(features[2]),
    }
    for name in SERVED_COLUMNS:
        if name in arrow_schema.names:  # carried when the split has it, else null
            typ = arrow_schema.field(name).type
            has = name in t.column_names
            cols[name] = t.column(name).cast(typ) if has else pa.nulls(n, typ)
    return pa.table([cols[f.name] for f in arrow_schema], schema=arrow_schema)


def check_device(model_dir: str | Path, config: EmbedConfig) -> str:
    """The device to embed on, after failing at once where a GPU is expected and CUDA is missing.

    A GPU is expected when ``config.device`` asks for cuda or the model folder's training summary
    says it was trained with ``profile=cluster``; then a missing CUDA raises
    :class:`~components.common.device.CudaUnavailableError` unless ``config.allow_cpu`` (then an
    explicit cuda device falls back to cpu).
    """
    device = config.device
    check_model_folder(model_dir)
    if wants_cuda(device):
        why = f"device={device}"
    elif trained_for_gpu(model_dir):
        why = "a model trained with profile=cluster"
    else:
        return device
    if not require_cuda("embed", why, config.allow_cpu) and wants_cuda(device):
        device = "cpu"
    return device


def embed_dataset(
    dataset_dir: str | Path,
    model_dir: str | Path,
    output_dir: str | Path,
    config: EmbedConfig | None = None,
    progress: bool = True,
) -> EmbedResult:
    """Embed the rows of ``config.splits`` (this shard of each) into ``output_dir`` (a folder).

    Writes ``schema.EMBED_FILE`` (rows in the data set's order per split) and
    ``schema.EMBED_FAILURES_FILE`` (rows whose image did not decode).
    """
    from tqdm.auto import tqdm

    config = config or EmbedConfig()
    for stale in remove_stale_temporaries(Path(output_dir).parent, names=[Path(output_dir).name]):
        print(f"embed: removed {stale}, left by a run that was killed")
    device = check_device(model_dir, config)
    shard_index, num_shards, batch_size = config.shard_index, config.num_shards, config.embed_batch_size
    dataset_dir, output_dir = Path(dataset_dir), Path(output_dir)
    names = config.split_names
    data = open_splits(dataset_dir, names)
    lm = load_model(model_dir, device=device, precision=config.precision)
    if lm.device.type == "cpu":
        torch.set_num_threads(config.threads or default_threads())
    transform = eval_transform(lm.geometry)
    workers = default_decode_workers(lm.device) if config.decode_workers < 0 else config.decode_workers
    on_model = config.transform_device == "model" or (
        config.transform_device == "auto" and lm.device.type == "cuda"
    )
    runner = _Runner(lm, transform, config.compile_mode, batch_size)

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(output_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    stats: list[SplitStats] = []
    failures: list[dict] = []
    dim = 0
    started = time.perf_counter()
    try:
        arrow_schema = output_schema(data)
        writer = pq.ParquetWriter(str(tmp / schema.EMBED_FILE), arrow_schema)
        try:
            for split in names:
                ds = data[split]
                start, end = shard_bounds(len(ds), shard_index, num_shards)
                st = SplitStats(split, end - start)
                t0 = time.perf_counter()
                source = _BatchSource(
                    ds.with_format("arrow"),
                    start,
                    end,
                    batch_size,
                    split,
                    None if on_model else transform,
                    served_columns(ds),
                    fallback=transform,
                )
                bar = tqdm(total=end - start, desc=f"embed {split}", unit="img", disable=not progress)
                # One batch in flight: batch i's outputs are written while the device runs batch i + 1.
                pending: _InFlight | None = None
                for batch in itertools.chain(iter_batches(source, workers), [None]):
                    launched = None
                    if batch is not None:
                        failures.extend(batch.failures)
                        st.failed += len(batch.failures)
                        if batch.pixel_values is not None:
                            launched = runner.launch(batch)
                        bar.update(batch.table.num_rows + len(batch.failures))
                    done, pending = pending, launched
                    if done is not None:
                        batch, (logits, emb) = done.batch, done.result()
                        dim = emb.shape[1]
                        out = _output_table(batch, split, logits, emb, lm.model_version, arrow_schema)
                        writer.write_table(out)
                        st.embedded += emb.shape[0]
                        st.unlabelled += int(
                            pc.sum(pc.equal(out.column(E.LABEL), schema.NO_LABEL)).as_py() or 0
                        )
                        if E.SERVED_LABEL in out.column_names:
                            st.served += out.num_rows - out.column(E.SERVED_LABEL).null_count
                bar.close()
                st.seconds = time.perf_counter() - t0
                stats.append(st)
        finally:
            writer.close()
        pq.write_table(
            pa.Table.from_pylist(failures, schema=FAILURES_SCHEMA), str(tmp / schema.EMBED_FAILURES_FILE)
        )
        replace_dir(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result = EmbedResult(output_dir, lm.model_version, stats, failures, time.perf_counter() - started, dim)
    unlabelled, served = sum(s.unlabelled for s in stats), sum(s.served for s in stats)
    print(
        f"embed: {result.rows} rows embedded, {len(failures)} failed to decode, splits {','.join(names)} "
        + (f"({unlabelled} without a label yet) " if unlabelled else "")
        + (f"({served} with a served prediction, carried) " if served else "")
        + f"(shard {shard_index + 1}/{num_shards}), {result.images_per_second:.0f} images/s, "
        f"embedding dim {dim}, model_version {lm.model_version}, wrote {output_dir}"
    )
    return result


def summary_markdown(result: EmbedResult, max_failures: int = 20) -> str:
    """A Markdown summary for the KFP UI: rows per split, failures listed."""
    lines = [
        "# Embeddings",
        "",
        f"- model_version: `{result.model_version}`",
        f"- embedding dimension: {result.embedding_dim}",
        f"- throughput: {result.images_per_second:.0f} images/s ({result.seconds:.1f} s)",
        "",
        "| split | rows | embedded | failed to decode |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {s.split} | {s.rows} | {s.embedded} | {s.failed} |" for s in result.stats]
    notes = [
        f"- {s.split}: {s.unlabelled} row(s) without a label yet (label {schema.NO_LABEL}), embedded"
        for s in result.stats
        if s.unlabelled
    ] + [
        f"- {s.split}: {s.served} row(s) with the serving system's prediction "
        f"(`{E.SERVED_LABEL}`, `{E.SERVED_SCORE}`, `{E.GIVEN_PREDICTION_ID}`), carried into the output"
        for s in result.stats
        if s.served
    ]
    if notes:
        lines += ["", *notes]
    if result.failures:
        lines += [
            "",
            f"## Images that did not decode ({len(result.failures)})",
            "",
            "| split | row | image_id | error |",
        ]
        lines += ["|---|---:|---|---|"]
        for f in result.failures[:max_failures]:
            err = f["error"].replace("|", "/").splitlines()[0][:120]
            lines.append(f"| {f['split']} | {f['row']} | `{f['image_id']}` | {err} |")
        if len(result.failures) > max_failures:
            lines.append(
                f"\n... and {len(result.failures) - max_failures} more in `{schema.EMBED_FAILURES_FILE}`"
            )
    return "\n".join(lines) + "\n"
