"""The cluster profile on a GPU: train and embed ResNet-50 at 224 px through the stages' own functions.

    benchmarks/gpu.sh                                  # on a machine with a CUDA GPU (see its header)
    python benchmarks/bench_gpu.py --dry-run           # CPU, tiny model and sizes: checks the script

What it runs (the cluster profile of components/train/config.py: microsoft/resnet-50, 224 px,
batch 32, bf16 on a GPU that has it):

1. a data set built by the data stage (``build_dataset``) from Fashion-MNIST
   (/usr/share/datasets/fashion-mnist; IDX files of random images of the same shape when absent);
2. a model folder holding ResNet-50 built from its configuration (``transformers.ResNetConfig()``
   is ResNet-50: bottleneck blocks 3-4-6-3, widths 256-2048) with random weights and the image
   processor of microsoft/resnet-50 (shortest edge 224, crop_pct 0.875, ImageNet mean and std):
   the Hub cannot be reached there, and random weights cost the same;
3. train: ``train_model`` with ``profile=cluster`` on that folder, twice (``--train-steps`` short
   and long): the difference of the two ``train_time_s`` gives the steady training rate (start-up
   costs cancel), and one epoch of 60,000 images = 60,000 / that rate + the validation pass;
   next to it the bare training step (forward, backward, AdamW, bf16 autocast, channels-last) on
   pre-made tensors at the profile's batch 32 and at 256: what the model alone allows;
4. embed: ``embed_dataset`` on the trained folder (the real data path: Arrow slices, PNG decoding,
   transforms, DataLoader workers, channels-last, bf16), once per ``--compile`` mode; each run
   embeds the validation split first (warm-up: compilation, CUDA graphs, cuDNN autotuning), then the
   training split, whose own time gives the steady rate; next to it the bare forward pass of the
   same model (``LoadedModel.forward``, compiled the same way) on pre-made tensors on the GPU;
5. peak GPU memory of each step.

Prints one line per figure and a table with the ratios and the targets (H200: embedding >= 20,000
images/s and >= 0.8 x the bare forward pass; one epoch of 60,000 images <= 2 min).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FASHION = Path("/usr/share/datasets/fashion-mnist")
EPOCH_IMAGES = 60_000
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
TARGET_EMBED_IPS = 20_000
TARGET_EMBED_RATIO = 0.8
TARGET_EPOCH_S = 120.0


def log(msg: str) -> None:
    """One line of the benchmark's output, flushed."""
    print(msg, flush=True)


# ------------------------------------------------------------------------------------------ inputs


def _write_idx(path: Path, array: np.ndarray) -> None:
    dtype_code = 0x08  # unsigned byte
    header = bytes([0, 0, dtype_code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def synthetic_idx_folder(folder: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """IDX files shaped like Fashion-MNIST's (28 x 28 greyscale, labels 0..9) holding random images."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        images[:, 4:24, 6:22] //= 2 + labels[:, None, None] % 3  # some structure per class
        _write_idx(folder / f"{part}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{part}-labels-idx1-ubyte.gz", labels)
    return folder


def build_data(work: Path, train: int, validation: int, production: int) -> tuple[Path, str]:
    """The data stage's folder at these sizes: (folder, where the images came from)."""
    from components.data.build import build_dataset
    from components.data.config import DataConfig

    if (FASHION / "train-images-idx3-ubyte.gz").is_file():
        source, what = FASHION, f"Fashion-MNIST ({FASHION})"
    else:
        source = synthetic_idx_folder(work / "idx", max(60_000, train + validation), max(10_000, production))
        what = "synthetic 28 x 28 images (Fashion-MNIST not installed)"
    out = work / "dataset"
    build_dataset(
        DataConfig(
            source=str(source), training_size=train, validation_size=validation, production_size=production
        ),
        out,
        quiet=True,
    )
    return out, what


def resnet_folder(folder: Path, dry_run: bool) -> Path:
    """A model folder holding ResNet-50 (dry run: a tiny ResNet) with random weights and its processor."""
    import torch
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    from components.common import schema

    torch.manual_seed(0)
    id2label = dict(enumerate(schema.CLASS_NAMES))
    label2id = {v: k for k, v in id2label.items()}
    kw = {"id2label": id2label, "label2id": label2id}
    if dry_run:
        config = ResNetConfig(embedding_size=8, hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1], **kw)
        size = 32
    else:
        config = ResNetConfig(**kw)  # the defaults are ResNet-50 (microsoft/resnet-50's configuration)
        size = 224
    ResNetForImageClassification(config).save_pretrained(folder)
    ConvNextImageProcessor(
        size={"shortest_edge": size}, crop_pct=0.875, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD
    ).save_pretrained(folder)
    return folder


def parameters(model) -> int:
    """Number of parameters of a torch module."""
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------- GPU


class Gpu:
    """Timing and peak memory on CUDA; plain wall time on CPU (dry run)."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch, self.cuda = torch, device.startswith("cuda")

    def sync(self) -> None:
        """Wait for the device."""
        if self.cuda:
            self.torch.cuda.synchronize()

    def reset(self) -> None:
        """Start a new peak-memory reading."""
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float:
        """Peak GPU memory allocated by torch since :meth:`reset` (0 on CPU)."""
        return self.torch.cuda.max_memory_allocated() / 2**30 if self.cuda else 0.0


# ----------------------------------------------------------------------------------------- train


def run_train(data: Path, model_src: Path, out: Path, steps: int, batch: int, allow_cpu: bool) -> dict:
    """The train stage (cluster profile) for ``steps`` optimizer steps: its summary's metrics."""
    from components.train.config import TrainConfig
    from components.train.train import train_model

    cfg = TrainConfig(
        profile="cluster", model_name=str(model_src), max_steps=steps, batch_size=batch, allow_cpu=allow_cpu
    )
    t0 = time.perf_counter()
    result = train_model(data, out, cfg)
    metrics = dict(result.metrics)
    metrics["wall_s"] = time.perf_counter() - t0
    return metrics


def bare_train_step(model_dir: Path, device: str, batch: int, steps: int, size: int, gpu: Gpu) -> float:
    """Images/s of forward + backward + AdamW on pre-made tensors (bf16 autocast on CUDA, channels-last)."""
    import torch
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(str(model_dir)).to(device)
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=gpu.cuda)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    use_bf16 = gpu.cuda and torch.cuda.is_bf16_supported()

    def step() -> None:
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=use_bf16):
            loss = model(pixel_values=x, labels=y).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(max(2, steps // 5)):
        step()
    gpu.sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    gpu.sync()
    return batch * steps / (time.perf_counter() - t0)


# ----------------------------------------------------------------------------------------- embed


def run_embed(data: Path, model: Path, out: Path, device: str, mode: str, batch: int, workers: int) -> dict:
    """The embed stage on validation (warm-up) then training: overall and steady (training split) rates."""
    from components.embed.config import EmbedConfig
    from components.embed.embed import embed_dataset

    cfg = EmbedConfig(
        splits="validation,training",
        embed_batch_size=batch,
        device=device,
        allow_cpu=not device.startswith("cuda"),
        precision="bf16" if device.startswith("cuda") else "auto",
        compile_mode=mode,
        decode_workers=workers,
    )
    t0 = time.perf_counter()
    r = embed_dataset(data, model, out, cfg, progress=False)
    wall = time.perf_counter() - t0
    training = next(s for s in r.stats if s.split == "training")
    shutil.rmtree(out, ignore_errors=True)
    return {
        "rows": r.rows,
        "wall_s": wall,
        "overall_ips": r.rows / wall,
        "steady_ips": training.embedded / training.seconds,
        "training_rows": training.embedded,
        "warmup_s": next(s.seconds for s in r.stats if s.split == "validation"),
    }


def bare_forward(model: Path, device: str, mode: str, batch: int, iters: int, gpu: Gpu) -> float:
    """Images/s of the stage's forward pass (same model, bf16, channels-last) on pre-made device tensors."""
    import torch

    from components.embed.embed import load_model

    lm = load_model(model, device=device, precision="bf16" if gpu.cuda else "auto")
    fwd = lm.forward
    if mode != "none":
        fwd = torch.compile(lm.forward, mode=None if mode == "default" else mode, dynamic=False)
    size = lm.geometry.crop_size
    x = torch.randn(batch, 3, size, size, device=lm.device)
    with torch.inference_mode():
        for _ in range(3):
            if mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            fwd(x)
        gpu.sync()
        t0 = time.perf_counter()
        for _ in range(iters):
            if mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            logits, emb = fwd(x)
        gpu.sync()
    return batch * iters / (time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``--dry-run``: CPU, tiny sizes and model)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny model and sizes: checks the script")
    ap.add_argument("--train-rows", type=int, default=50_000, help="training split (embedded for the rate)")
    ap.add_argument("--validation-rows", type=int, default=2_000)
    ap.add_argument("--production-rows", type=int, default=1_000)
    ap.add_argument(
        "--train-steps", default="40,440", help="short,long optimizer steps of the two train runs"
    )
    ap.add_argument("--train-batch", type=int, default=32, help="the cluster profile's batch size")
    ap.add_argument("--embed-batch", type=int, default=256)
    ap.add_argument("--decode-workers", type=int, default=-1, help="embed's decode_workers (-1: its default)")
    ap.add_argument(
        "--compile", default="none,reduce-overhead", help="embed compile modes to measure, comma-separated"
    )
    ap.add_argument("--bare-iters", type=int, default=60)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--json", default="", help="also write the figures to this JSON file")
    ap.add_argument(
        "--require-gpu",
        action="store_true",
        help="fail without CUDA (default: say so and skip, for make bench)",
    )
    args = ap.parse_args(argv)
    if args.dry_run:
        args.train_rows, args.validation_rows, args.production_rows = 96, 32, 30
        args.train_steps, args.train_batch, args.embed_batch = "1,3", 8, 16
        args.bare_iters, args.compile = 2, "none"
        args.decode_workers = 0 if args.decode_workers < 0 else args.decode_workers
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the figures (also printed)."""
    args = parse_args(argv)
    import torch

    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda and not args.dry_run:
        msg = "bench_gpu: no CUDA device (torch.cuda.is_available() is False); --dry-run checks the script on CPU"
        if args.require_gpu:
            raise SystemExit(msg)
        log(msg + "; skipped")
        return {}
    device = "cuda" if cuda else "cpu"
    if not cuda:
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    gpu = Gpu(device)
    figures: dict = {"device": torch.cuda.get_device_name() if cuda else "cpu (dry run)"}
    log(f"bench_gpu: {figures['device']}, torch {torch.__version__}, {os.cpu_count()} CPUs")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        data, what = build_data(work, args.train_rows, args.validation_rows, args.production_rows)
        log(
            f"data: {args.train_rows:,} training / {args.validation_rows:,} validation rows of {what} "
            f"({time.perf_counter() - t0:.1f} s)"
        )
        src = resnet_folder(work / "resnet", args.dry_run)
        from transformers import AutoModelForImageClassification

        n_params = parameters(AutoModelForImageClassification.from_pretrained(str(src)))
        size = 32 if args.dry_run else 224
        log(
            f"model: ResNet from its configuration, random weights, {n_params / 1e6:.1f} M parameters, {size} px"
        )
        figures["params_m"] = n_params / 1e6

        # ---- train
        short, long_ = (int(s) for s in args.train_steps.split(","))
        model_dir = work / "model"
        if not args.skip_train:
            gpu.reset()
            a = run_train(data, src, work / "model-short", short, args.train_batch, allow_cpu=not cuda)
            b = run_train(data, src, model_dir, long_, args.train_batch, allow_cpu=not cuda)
            mem = gpu.peak_gib()
            shutil.rmtree(work / "model-short", ignore_errors=True)
            images = (long_ - short) * args.train_batch
            rate = images / max(b["train_time_s"] - a["train_time_s"], 1e-9)
            # the validation pass at the end of the long run (predict) is part of an epoch too
            val_s = max(b["wall_s"] - b["train_time_s"], 0.0)
            epoch = EPOCH_IMAGES / rate
            figures["train"] = {
                "steady_ips": rate,
                "epoch_60k_s": epoch,
                "epoch_60k_with_validation_s": epoch + val_s,
                "short_run": a,
                "long_run": b,
                "peak_gib": mem,
            }
            log(
                f"train stage (cluster profile, batch {args.train_batch}): {rate:,.0f} images/s steady "
                f"(runs of {short} and {long_} steps: {a['train_time_s']:.1f} s and {b['train_time_s']:.1f} s "
                f"in trainer.train, {a['wall_s']:.1f} s and {b['wall_s']:.1f} s in all); one epoch of "
                f"{EPOCH_IMAGES:,} images {epoch:.0f} s (+ {val_s:.0f} s load, decode check, validation "
                f"and save); peak GPU memory {mem:.1f} GiB"
            )
            for bs in sorted({args.train_batch, 8 if args.dry_run else 256}):
                gpu.reset()
                ips = bare_train_step(src, device, bs, 3 if args.dry_run else 30, size, gpu)
                figures.setdefault("bare_train_ips", {})[bs] = ips
                log(
                    f"bare training step (fwd + bwd + AdamW, pre-made tensors) batch {bs}: {ips:,.0f} images/s, "
                    f"epoch of {EPOCH_IMAGES:,} {EPOCH_IMAGES / ips:.0f} s, peak {gpu.peak_gib():.1f} GiB"
                )
        else:
            resnet_summary(src)
            model_dir = src

        # ---- embed
        figures["embed"] = {}
        for mode in [m.strip() for m in args.compile.split(",") if m.strip()]:
            gpu.reset()
            e = run_embed(data, model_dir, work / "emb", device, mode, args.embed_batch, args.decode_workers)
            e["peak_gib"] = gpu.peak_gib()
            gpu.reset()
            e["bare_ips"] = bare_forward(model_dir, device, mode, args.embed_batch, args.bare_iters, gpu)
            e["bare_peak_gib"] = gpu.peak_gib()
            e["ratio"] = e["steady_ips"] / e["bare_ips"]
            figures["embed"][mode] = e
            log(
                f"embed stage (bf16, compile {mode}): {e['steady_ips']:,.0f} images/s steady on "
                f"{e['training_rows']:,} rows, {e['overall_ips']:,.0f} images/s over the whole run "
                f"({e['wall_s']:.1f} s incl. {e['warmup_s']:.1f} s warm-up split); bare forward "
                f"{e['bare_ips']:,.0f} images/s; ratio {e['ratio']:.2f}; peak GPU memory {e['peak_gib']:.1f} "
                f"GiB (bare {e['bare_peak_gib']:.1f})"
            )
    figures["wall_s"] = time.perf_counter() - started
    print_table(figures, cuda)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return figures


def resnet_summary(folder: Path) -> None:
    """Give a bare model folder the training summary embed verifies (when train is skipped)."""
    from components.common import schema
    from components.common.model_folder import weights_version, write_summary

    write_summary(
        folder,
        {
            "model_version": weights_version(folder),
            "profile": "cluster",
            "class_names": list(schema.CLASS_NAMES),
        },
    )


def print_table(f: dict, cuda: bool) -> None:
    """The figures against the targets (targets apply to an H200; a dry run only checks the script)."""
    rows = []
    if "train" in f:
        t = f["train"]
        rows.append(
            ("train: one epoch of 60,000 images (s)", f"{t['epoch_60k_s']:.0f}", f"<= {TARGET_EPOCH_S:.0f}")
        )
        rows.append(("train: steady images/s (stage)", f"{t['steady_ips']:,.0f}", ""))
    for mode, e in f.get("embed", {}).items():
        rows.append(
            (
                f"embed [{mode}]: images/s (stage, steady)",
                f"{e['steady_ips']:,.0f}",
                f">= {TARGET_EMBED_IPS:,}",
            )
        )
        rows.append(
            (f"embed [{mode}]: stage / bare forward", f"{e['ratio']:.2f}", f">= {TARGET_EMBED_RATIO}")
        )
    log("")
    log(f"| figure ({f['device']}) | measured | target (H200) |")
    log("|---|---:|---|")
    for r in rows:
        log(f"| {r[0]} | {r[1]} | {r[2]} |")
    if not cuda:
        log("dry run on CPU: the figures check the script, not the targets")
    log(f"bench_gpu: {f['wall_s']:.0f} s in all")


if __name__ == "__main__":
    main()
