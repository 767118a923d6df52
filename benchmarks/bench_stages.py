"""Where the time goes: the training pipeline stage by stage, measured locally and estimated for a cluster.

    .venv/bin/python benchmarks/bench_stages.py                    # runs the pipeline (kfp.local, ~4-6 min)
    .venv/bin/python benchmarks/bench_stages.py --run-dir outputs/fashion-drift-training-...  --times times.json

Part 1 (MEASURED): runs the training pipeline at its default size through kfp.local
(``components.pipelines.local.run_local``, as ``make run`` does) and reads each task's wall time
from its progress line; rows from the artifacts' metadata; bytes moved = the sizes of the
artifacts the task downloads (its inputs) and uploads (its outputs), with their object counts (a
KFP launcher moves an artifact one object at a time).

Part 2 (ESTIMATED, not measured): the same table for a cluster run of 60,000 images (50,000
training, 4,000 validation, 6,000 production) on one GPU, cluster profile (ResNet-50, 224 px,
3 epochs, 2,048-value embeddings). The GPU stages take their rates from ``bench_gpu.py``'s JSON
when one is given (``--gpu-json``), else the documented guesses below (labelled as such); the
CPU stages scale their measured per-row time by the rows and their bytes by the embedding width;
transfers assume sequential object requests at ``--object-ms`` each plus ``--bandwidth`` MB/s.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MB = 1e6
# What each task of the training pipeline downloads: (task folder, artifact) of its inputs.
INPUTS = {
    "data": [],
    "train": [("data", "dataset")],
    "embed": [("data", "dataset"), ("train", "model")],
    "prepare": [("data", "dataset"), ("embed", "embeddings")],
    "arize": [("prepare", "prepared")],
    "drift": [("prepare", "prepared"), ("prepare", "prepared")],  # production and baseline: both the same
    # the candidate (and, from the second run on, the production model from the registry)
    "evaluate": [("data", "dataset"), ("train", "model")],
}
STAGES = list(INPUTS)
LOCAL_DIM = 256  # the local profile's embedding width (small ResNet)
CLUSTER_DIM = 2048  # ResNet-50's
CLUSTER = {"training": 50_000, "validation": 4_000, "production": 6_000}
CLUSTER_EPOCHS = 3
RESNET50_BYTES = 94.4 * MB  # 23.5 M float32 parameters in model.safetensors
# Guesses used only without a bench_gpu JSON (ESTIMATES, not measurements): the train stage's data path
# (one DataLoader worker decoding and augmenting to 224 px per image) bounds it near 1,000 images/s; embed
# with decoding workers and the transform on the GPU at 10,000 images/s.
GUESS_TRAIN_IPS = 1_000.0
GUESS_EMBED_IPS = 10_000.0
GPU_STAGE_START_S = 30.0  # model load, data checks, CUDA start-up (guess)


def folder_size(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path`` (a file or a folder)."""
    if path.is_file():
        return path.stat().st_size, 1
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def task_dir(run: Path, task: str) -> Path:
    """A task's folder in a kfp.local run (embed sits in the shard loop's folder)."""
    direct = run / task
    if direct.is_dir():
        return direct
    found = sorted(run.glob(f"for-loop-*/{task}"))
    if not found:
        raise FileNotFoundError(f"{run}: no folder of task {task!r}")
    return found[0]


def outputs_of(run: Path, task: str) -> dict[str, Path]:
    """The output artifacts of a task: name -> path."""
    d = task_dir(run, task)
    return {p.name: p for p in d.iterdir() if p.name != "executor_output.json"}


def metadata(run: Path, task: str) -> dict:
    """The task's output artifacts' metadata from its executor_output.json."""
    out = json.loads((task_dir(run, task) / "executor_output.json").read_text())
    return {
        k: (v.get("artifacts") or [{}])[0].get("metadata", {}) for k, v in out.get("artifacts", {}).items()
    }


def rows_of(run: Path, task: str) -> tuple[float, str]:
    """Rows the task handled, and what they are."""
    md = metadata(run, "data")["dataset"]["rows"]
    total = float(sum(md.values()))
    if task == "train":
        m = metadata(run, "train").get("metrics", {})
        epochs = float(m.get("epochs", 1.0))
        return md["training"] * epochs + md[
            "validation"
        ] * epochs, f"{epochs:g} epochs of training + validation"
    if task == "drift":
        return total, "production + baseline rows read"
    if task == "evaluate":
        return float(md["validation"] + md["production"]), "validation + production rows, per model"
    return total, "rows"


def measured_table(run: Path, times: dict[str, float]) -> list[dict]:
    """One row per stage: seconds, rows, rows/s, bytes and objects in and out."""
    table = []
    for task in STAGES:
        ins = [folder_size(outputs_of(run, t)[a]) for t, a in INPUTS[task]]
        if task == "data":
            ins = [folder_size(Path("/usr/share/datasets/fashion-mnist"))]
        outs = [folder_size(p) for p in outputs_of(run, task).values()]
        rows, what = rows_of(run, task)
        s = times.get(task, float("nan"))
        table.append(
            {
                "stage": task,
                "seconds": s,
                "rows": rows,
                "what": what,
                "rows_per_s": rows / s if s else float("nan"),
                "in_bytes": sum(b for b, _ in ins),
                "in_objects": sum(n for _, n in ins),
                "out_bytes": sum(b for b, _ in outs),
                "out_objects": sum(n for _, n in outs),
            }
        )
    return table


def cluster_estimate(
    measured: list[dict], gpu: dict | None, object_ms: float, bandwidth: float
) -> list[dict]:
    """The measured table scaled to a 60,000-image cluster run (see the module docstring)."""
    local_rows = {r["stage"]: r for r in measured}
    n_local = local_rows["data"]["rows"]
    n = float(sum(CLUSTER.values()))
    scale = n / n_local
    if gpu and "train" in gpu:
        train_ips, train_src = gpu["train"]["steady_ips"], f"bench_gpu on {gpu.get('device')}"
    else:
        train_ips, train_src = GUESS_TRAIN_IPS, "guess"
    emb = (gpu or {}).get("embed") or {}
    if emb:
        embed_ips = max(e["steady_ips"] for e in emb.values())
        embed_src = f"bench_gpu on {gpu.get('device')}"
    else:
        embed_ips, embed_src = GUESS_EMBED_IPS, "guess"
    per_vec = (CLUSTER_DIM - LOCAL_DIM) * 4  # extra bytes per row of a 2,048-value embedding
    out = []
    for r in measured:
        st = r["stage"]
        e = dict(r)
        e["in_bytes"], e["out_bytes"] = r["in_bytes"] * scale, r["out_bytes"] * scale
        e["in_objects"] = r["in_objects"] * (scale if r["in_objects"] > 50 else 1)
        e["out_objects"] = r["out_objects"] * (scale if r["out_objects"] > 50 else 1)
        if st == "data":
            e["rows"], e["seconds"] = n, r["seconds"] * scale
            e["basis"] = "measured per row x rows (CPU)"
        elif st == "train":
            img = CLUSTER["training"] * CLUSTER_EPOCHS
            e["rows"] = img + CLUSTER["validation"] * CLUSTER_EPOCHS
            e["seconds"] = GPU_STAGE_START_S + e["rows"] / train_ips
            e["out_bytes"], e["basis"] = RESNET50_BYTES, f"{train_ips:,.0f} img/s ({train_src})"
        elif st == "embed":
            e["rows"], e["seconds"] = n, GPU_STAGE_START_S + n / embed_ips
            e["in_bytes"] = r["in_bytes"] * scale - local_rows["train"]["out_bytes"] + RESNET50_BYTES
            e["out_bytes"] = r["out_bytes"] * scale + n * per_vec
            e["basis"] = f"{embed_ips:,.0f} img/s ({embed_src})"
        elif st == "evaluate":  # two models (candidate, production) over validation + production rows
            e["rows"] = (CLUSTER["validation"] + CLUSTER["production"]) * 2
            e["seconds"] = GPU_STAGE_START_S + e["rows"] / embed_ips
            e["in_bytes"] = r["in_bytes"] * scale - local_rows["train"]["out_bytes"] + 2 * RESNET50_BYTES
            e["basis"] = f"2 models at embed's {embed_ips:,.0f} img/s ({embed_src})"
        else:
            e["rows"] = r["rows"] * scale
            e["seconds"] = r["seconds"] * scale
            vec_in = n * per_vec * len(INPUTS[st])
            e["in_bytes"] = r["in_bytes"] * scale + vec_in
            e["out_bytes"] = r["out_bytes"] * scale + (n * per_vec if st == "prepare" else 0)
            e["basis"] = "measured per row x rows (CPU); vectors 8x wider"
        e["rows_per_s"] = e["rows"] / e["seconds"]
        e["transfer_s"] = (e["in_objects"] + e["out_objects"]) * object_ms / 1000 + (
            e["in_bytes"] + e["out_bytes"]
        ) / (bandwidth * MB)
        out.append(e)
    return out


def print_table(title: str, rows: list[dict], estimate: bool) -> None:
    """A Markdown table of the stages."""
    print(f"\n{title}\n")
    extra = " transfer (s, est.) | basis |" if estimate else " rows are |"
    print("| stage | wall (s) | rows | rows/s | in (MB) | in objects | out (MB) | out objects |" + extra)
    print("|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---|" if estimate else "---|"))
    for r in rows:
        tail = f" {r['transfer_s']:.0f} | {r['basis']} |" if estimate else f" {r['what']} |"
        print(
            f"| {r['stage']} | {r['seconds']:.1f} | {r['rows']:,.0f} | {r['rows_per_s']:,.0f} | "
            f"{r['in_bytes'] / MB:,.1f} | {r['in_objects']:,.0f} | {r['out_bytes'] / MB:,.1f} | "
            f"{r['out_objects']:,.0f} |" + tail
        )
    total = sum(r["seconds"] for r in rows)
    moved = sum(r["in_bytes"] + r["out_bytes"] for r in rows)
    print(f"| total | {total:.0f} | | | | | | | {moved / MB:,.0f} MB moved in all |")


def run_pipeline(out_dir: Path) -> tuple[Path, dict[str, float]]:
    """Run the training pipeline through kfp.local; (run folder, seconds per task)."""
    from components.pipelines.local import run_local

    buf = io.StringIO()

    class Tee(io.StringIO):
        def write(self, s: str) -> int:
            sys.stdout.write(s)
            return buf.write(s)

    t0 = time.perf_counter()
    run_local(out_dir, out=Tee())
    print(f"pipeline: {time.perf_counter() - t0:.0f} s in all")
    times = {}
    for line in buf.getvalue().splitlines():
        m = re.match(r"^(\S+)(?: \d+/\d+)?\s+([\d.]+)s(?:\s|$)", line)
        if m:
            times[m.group(1)] = times.get(m.group(1), 0.0) + float(m.group(2))
    runs = sorted(p for p in out_dir.glob("fashion-drift-training-*") if p.is_dir())
    return runs[-1], times


def main() -> None:
    """Measure (or read) a local run, print it and the cluster estimate."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default="", help="an existing kfp.local run folder (with --times)")
    ap.add_argument("--times", default="", help="JSON of seconds per task for --run-dir")
    ap.add_argument("--gpu-json", default="", help="bench_gpu.py --json output for the GPU stages' rates")
    ap.add_argument("--object-ms", type=float, default=20.0, help="one object request (estimate)")
    ap.add_argument("--bandwidth", type=float, default=200.0, help="object storage MB/s (estimate)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        if args.run_dir:
            run, times = Path(args.run_dir), json.loads(Path(args.times).read_text())
        else:
            run, times = run_pipeline(Path(tmp))
        measured = measured_table(run, times)
        print_table("MEASURED: training pipeline, default size, kfp.local on this machine", measured, False)
    gpu = json.loads(Path(args.gpu_json).read_text()) if args.gpu_json else None
    est = cluster_estimate(measured, gpu, args.object_ms, args.bandwidth)
    print_table(
        "ESTIMATED (not measured): cluster run, 60,000 images, one GPU, cluster profile; transfers at "
        f"{args.object_ms:g} ms per object + {args.bandwidth:g} MB/s",
        est,
        True,
    )


if __name__ == "__main__":
    main()
