"""Running a trained model folder on data-set images: shared by the embed and evaluate stages.

- :func:`load_model`: a train-stage model folder, verified
  (:func:`~components.common.model_folder.verify_model_folder`), loaded for inference
  (:class:`LoadedModel`: one forward pass gives logits and the embedding);
- :func:`decode_batch`: PNG/JPEG bytes of a batch of data-set rows decoded (torchvision), their image
  features computed (:func:`image_features`: brightness, contrast, sharpness) and the evaluation
  transform run on the whole batch; rows that do not decode are listed, never fatal.

Moved here from the embed stage so that the evaluate stage runs a model exactly as embed does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import torch

from components.common.model_folder import MODEL_VERSION, verify_model_folder
from components.common.preprocess import ImageGeometry
from components.common.schema import DatasetColumns as C

if TYPE_CHECKING:
    from collections.abc import Callable

    from transformers import PreTrainedModel

# torchvision 0.29 warns on every decode that its decoders will move to TorchCodec; they are
# still the fastest PNG decoder here (see the embed stage's README) and the warning would flood the logs.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision")

# ------------------------------------------------------------------------------------ the model


@dataclass
class LoadedModel:
    """A model folder loaded for inference: the model, its image geometry and version, where it runs."""

    model: PreTrainedModel
    geometry: ImageGeometry
    model_version: str
    device: torch.device
    dtype: torch.dtype
    fused: bool  # ResNet-like: base model's pooled output feeds ``classifier`` directly

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixel_values [B, 3, S, S] -> (logits [B, K] float32, embedding [B, D] float32)."""
        x = pixel_values.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        autocast = self.device.type == "cuda" and self.dtype != torch.float32
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=autocast):
            if self.fused:
                out = self.model.base_model(x, output_hidden_states=False)
                hidden = out.last_hidden_state
                logits = self.model.get_submodule("classifier")(out.pooler_output)
            else:  # generic fallback: ask for hidden states, keep the last one only
                out = self.model(pixel_values=x, output_hidden_states=True)
                hidden = out.hidden_states[-1]
                logits = out.logits
        embedding = hidden.float().mean(dim=(-2, -1)) if hidden.dim() == 4 else hidden.float().mean(dim=1)
        return logits.float(), embedding


def load_model(model_dir: str | Path, device: str | None = None, precision: str = "auto") -> LoadedModel:
    """Load a train-stage model folder for inference (``device`` None or '': cuda when there is one).

    The folder is verified first (:func:`~components.common.model_folder.verify_model_folder`): a
    model of another setup (another class list) or weights replaced after training raise
    :class:`~components.common.model_folder.ModelFolderMismatchError`.
    """
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model_dir = Path(model_dir)
    summary = verify_model_folder(model_dir)
    try:
        processor = AutoImageProcessor.from_pretrained(str(model_dir))  # type: ignore[no-untyped-call]
        model = AutoModelForImageClassification.from_pretrained(str(model_dir))
    except (OSError, ValueError) as e:
        raise ValueError(f"model folder {model_dir}: cannot be loaded ({type(e).__name__}: {e})") from e
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if precision == "auto":
        dtype = (
            (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
            if dev.type == "cuda"
            else torch.float32
        )
    else:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    model = model.eval().to(dev).to(memory_format=torch.channels_last)
    fused = hasattr(model, "classifier") and "ResNet" in type(model).__name__
    return LoadedModel(
        model, ImageGeometry.from_processor(processor), summary[MODEL_VERSION], dev, dtype, fused
    )


# ------------------------------------------------------------------------------- image features


def image_features(gray: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 [B, H, W] -> brightness (mean in [0, 1]), contrast (std), sharpness (variance of Laplacian)."""
    x = gray.float().div_(255.0)
    brightness = x.mean(dim=(1, 2))
    contrast = x.std(dim=(1, 2), unbiased=False)
    # the 3x3 Laplacian [[0, 1, 0], [1, -4, 1], [0, 1, 0]] over the valid area, by shifted slices
    # (4x faster than conv2d on one-channel 28x28 images here)
    c = x[:, 1:-1, 1:-1]
    lap = x[:, :-2, 1:-1] + x[:, 2:, 1:-1] + x[:, 1:-1, :-2] + x[:, 1:-1, 2:] - 4.0 * c
    sharpness = lap.var(dim=(1, 2), unbiased=False)
    return brightness.numpy(), contrast.numpy(), sharpness.numpy()


# ------------------------------------------------------------------------------------- batches


@dataclass
class Batch:
    """One decoded batch: the rows that decoded, their pixels and features, and the rows that did not."""

    table: pa.Table  # the rows that decoded (contract columns only)
    pixel_values: torch.Tensor | None
    features: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    failures: list[dict[str, Any]] = field(default_factory=list)


def _image_bytes(images: pa.ChunkedArray, split: str, start: int) -> list[bytes | Exception]:
    arr = images.combine_chunks()
    data = arr.field("bytes").to_pylist()
    paths = arr.field("path").to_pylist() if arr.type.get_field_index("path") >= 0 else [None] * len(data)
    out: list[bytes | Exception] = []
    for i, (b, p) in enumerate(zip(data, paths, strict=True)):
        if b is None and p:
            try:
                b = Path(p).read_bytes()
            except OSError as e:
                b = e
        if b is None:
            b = ValueError(f"split {split!r} row {start + i}: image has neither bytes nor a readable path")
        out.append(b)
    return out


def decode_batch(
    table: pa.Table, split: str, start: int, transform: Callable[[torch.Tensor], torch.Tensor]
) -> Batch:
    """Decode PNG/JPEG bytes, compute features, run the evaluation transform on the whole batch."""
    from torchvision.io import ImageReadMode, decode_image

    ids = table.column(C.IMAGE_ID).to_pylist()
    decoded: list[torch.Tensor | None] = []
    failures: list[dict[str, Any]] = []
    for i, data in enumerate(_image_bytes(table.column(C.IMAGE), split, start)):
        try:
            if isinstance(data, Exception):
                raise data
            img = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
            decoded.append(img)
        except Exception as e:  # noqa: BLE001 - any decoder error makes this one row a failure
            decoded.append(None)
            failures.append(
                {"image_id": ids[i], "split": split, "row": start + i, "error": f"{type(e).__name__}: {e}"}
            )
    keep = [i for i, d in enumerate(decoded) if d is not None]
    if len(keep) < len(decoded):
        table = table.filter(pa.array([d is not None for d in decoded]))
    if not keep:
        return Batch(table, None, None, failures)
    good = [d for d in decoded if d is not None]
    # Group images of the same size so each group is transformed as one tensor, then restore order.
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for j, img in enumerate(good):
        by_shape.setdefault(tuple(img.shape), []).append(j)
    pixel_values: torch.Tensor | None = None
    feats = [np.empty(len(good), np.float32) for _ in range(3)]
    for idx in by_shape.values():
        stack = torch.stack([good[j] for j in idx])
        gray = (
            stack[:, 0]
            if bool((stack[:, 0] == stack[:, 1]).all() and (stack[:, 0] == stack[:, 2]).all())
            else (stack.float().mean(dim=1).round().to(torch.uint8))
        )
        for k, values in enumerate(image_features(gray)):
            feats[k][idx] = values
        pv = transform(stack)
        if pixel_values is None:
            pixel_values = torch.empty((len(good), *pv.shape[1:]), dtype=pv.dtype)
        pixel_values[idx] = pv
    return Batch(table, pixel_values, (feats[0], feats[1], feats[2]), failures)
