"""Sensitivity and false alarms of the drift stage on real Fashion-MNIST test-file images.

    .venv/bin/python benchmarks/drift_scenarios.py --seeds 0 1 --work /tmp/drift-scenarios

For each seed: the data stage's default data set and the local profile's default training (cached
under ``--work/seed<s>``: a rerun reuses the model and the embeddings); then every image below goes
through the real embed stage (``embed_dataset``) and every window through the stage's own drift
steps (``locate_files`` -> ``load_baseline`` -> ``calibrate`` -> ``CalibratedDrift.test``).

- Test-file images only for production: a known-good "reference period" of 7 days x 200 rows,
  disjoint from the rows the windows draw from.
- Windows of 200 rows: at least 100 clean ones, and for each shift (rotation, blur, noise,
  brightness, translation, occlusion, inversion, class mix), each strength (low, medium, high) and
  each share of the window affected (10%, 50%, 100%) ``--windows`` windows.
- Four calibrations, in the same run:
  ``training``: today's default (reference = training rows from the train file, calibration = the
  data stage's validation rows, held out from the test file, production's part, never used by a
  window here); ``train-file``: the default before validation moved (calibration = validation rows
  from the train file: ``validation_part=train``, embedded by the same model); ``train+period``:
  reference = training rows, calibration = the reference period's production rows
  (``reference_days=7``); ``period``: reference and calibration both from the reference period,
  disjoint (``baseline_environment=production``).
- Two per-window levels: the default run rate 0.01 for a one-window run (what a daily scheduled
  run tests at; also the ``per_window`` rule at 0.01), and the default ``sidak`` rule's level for a
  30-window run (1-(0.99)^(1/30) = 0.000335, what ``make run``'s 30 days test at).

Printed: the clean-window false-alarm rate with a Wilson 95% interval against the level, the
detection rate per shift / strength / share, the mean over medium-strength 50% shifts (target
>= 0.85) and whether every 100% shift is detected; the gain of the new calibrations as a ratio of
false-alarm rates and a difference of detection against ``train-file``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.common import schema
from components.drift.config import DriftConfig
from components.drift.detectors import SIDAK, Sample, window_level
from components.drift.io import Rejected
from components.drift.stage import calibrate, embedding_dim, load_baseline, locate_files

C = schema.PreparedColumns
E = schema.EmbedColumns
WINDOW = 200
PERIOD_DAYS = 7
SHARES = (0.1, 0.5, 1.0)
STRENGTHS = ("low", "medium", "high")
SHIFTED_POOL = 1000  # test-file images transformed per shift and strength
# Shift -> strength -> parameter (see transform()).
SHIFTS: dict[str, dict[str, float]] = {
    "rotation": {"low": 10.0, "medium": 25.0, "high": 45.0},  # degrees, either way
    "blur": {"low": 0.6, "medium": 1.0, "high": 1.6},  # Gaussian sigma, pixels
    "noise": {"low": 15.0, "medium": 35.0, "high": 70.0},  # Gaussian sd, of 255
    "brightness": {"low": 25.0, "medium": 50.0, "high": 100.0},  # added, of 255
    "translation": {"low": 2.0, "medium": 4.0, "high": 7.0},  # pixels, random direction
    "occlusion": {"low": 6.0, "medium": 10.0, "high": 14.0},  # side of a black square, pixels
    "inversion": {"low": 0.25, "medium": 0.5, "high": 1.0},  # blend towards 255 - x
    "class_mix": {"low": 5.0, "medium": 3.0, "high": 1.0},  # affected rows come from only this many classes
}
# Calibration -> (prepared folder, drift settings): "prepared" holds the data stage's default
# validation rows (test file), "prepared-train-file" the train-file validation rows of before.
CALIBRATIONS = {
    "training": ("prepared", {}),
    "train-file": ("prepared-train-file", {}),
    "train+period": ("prepared", {"reference_days": PERIOD_DAYS}),
    "period": ("prepared", {"reference_days": PERIOD_DAYS, "baseline_environment": schema.PRODUCTION}),
}
RUN_RATE = DriftConfig().false_alarm_rate
LEVELS = {"1 window": window_level(SIDAK, RUN_RATE, 1), "30 windows": window_level(SIDAK, RUN_RATE, 30)}


def transform(images: np.ndarray, shift: str, value: float, rng: np.random.Generator) -> np.ndarray:
    """``images`` (n, 28, 28) uint8 with ``shift`` at strength ``value`` (class_mix: unchanged)."""
    from scipy import ndimage

    x = images.astype(np.float32)
    out = np.empty_like(x)
    for i, im in enumerate(x):
        if shift == "rotation":
            out[i] = ndimage.rotate(im, value * rng.choice([-1.0, 1.0]), reshape=False, order=1)
        elif shift == "blur":
            out[i] = ndimage.gaussian_filter(im, value)
        elif shift == "noise":
            out[i] = im + rng.normal(0.0, value, im.shape)
        elif shift == "brightness":
            out[i] = im + value
        elif shift == "translation":
            angle = rng.uniform(0, 2 * np.pi)
            out[i] = ndimage.shift(im, (value * np.sin(angle), value * np.cos(angle)), order=1)
        elif shift == "occlusion":
            s = int(value)
            r, c = rng.integers(0, 28 - s + 1, 2)
            im = im.copy()
            im[r : r + s, c : c + s] = 0.0
            out[i] = im
        elif shift == "inversion":
            out[i] = (1 - value) * im + value * (255.0 - im)
        else:
            out[i] = im
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def prepare_model(work: Path, seed: int, training_size: int, epochs: float) -> tuple[Path, Path, Path]:
    """The data stage's data set, a model trained with the local profile's defaults, and the same
    data set with validation rows from the train file instead (``validation_part=train``), all cached.

    The cache folders are named after the validation part, so a cache built before the data stage
    drew validation from the test file is not reused.
    """
    from components.data.build import build_dataset
    from components.data.config import DataConfig
    from components.train.train import TrainConfig, train_model

    config = DataConfig(seed=seed, training_size=training_size)
    dataset_dir = work / f"dataset-validation-{config.validation_part}"
    model_dir = work / f"model-validation-{config.validation_part}"
    train_file_dir = work / "dataset-validation-train"
    if not dataset_dir.is_dir():
        build_dataset(config, dataset_dir, quiet=True)
    if not train_file_dir.is_dir():
        build_dataset(dataclasses.replace(config, validation_part="train"), train_file_dir, quiet=True)
    if not model_dir.is_dir():
        t0 = time.time()
        train_model(dataset_dir, model_dir, TrainConfig(seed=seed, epochs=epochs))
        print(f"seed {seed}: trained in {time.time() - t0:.0f} s", flush=True)
    return dataset_dir, model_dir, train_file_dir


def embed_folder(
    dataset_dir: Path, model_dir: Path, out: Path, splits: str
) -> dict[str, dict[str, np.ndarray]]:
    """Embed ``splits`` of a data-stage folder with the real embed stage (cached in ``out``)."""
    from components.embed.config import EmbedConfig
    from components.embed.embed import embed_dataset

    if not (out / schema.EMBED_FILE).is_file():
        embed_dataset(dataset_dir, model_dir, out, EmbedConfig(splits=splits), progress=False)
    table = pq.read_table(out / schema.EMBED_FILE).to_pandas()
    result = {}
    for split, df in table.groupby(E.SPLIT):
        result[str(split)] = {
            "emb": np.stack(df[E.EMBEDDING].to_numpy()).astype(np.float32),
            "prob": np.stack(df[E.PROBABILITIES].to_numpy()).astype(np.float32),
            "score": df[E.PREDICTION_SCORE].to_numpy(np.float32),
            "pred": df[E.PREDICTION].to_numpy(),
            "label": df[E.LABEL].to_numpy(),
            "id": df[E.IMAGE_ID].to_numpy(),
            "ts": df[E.PREDICTION_TS]
            .dt.tz_convert(None)
            .astype("datetime64[us]")
            .to_numpy()
            .astype(np.int64),
            "feat": df[list(E.FEATURES)].to_numpy(np.float32),
        }
    return result


def image_folder(
    out: Path, images: list[np.ndarray], labels: np.ndarray, ids: list[str], seconds: np.ndarray
) -> Path:
    """A data-stage folder whose production split holds ``images`` (the other splits: one row each)."""
    from components.data.build import SplitRows, to_dataset_dict
    from components.data.config import DataConfig

    if out.is_dir():
        return out
    prod = SplitRows(
        list(images), labels.astype(np.int64), seconds.astype(np.int64), ids, ["none"] * len(ids)
    )
    one = SplitRows(images[:1], labels[:1].astype(np.int64), seconds[:1].astype(np.int64), ids[:1], ["none"])
    splits = {schema.TRAINING: one, schema.VALIDATION: one, schema.PRODUCTION: prod}
    tmp = out.with_name(out.name + ".tmp")
    to_dataset_dict(splits, DataConfig()).save_to_disk(str(tmp))
    tmp.rename(out)
    return out


def write_prepared(path: Path, rows: dict[str, np.ndarray], ts_us: np.ndarray | None = None) -> None:
    """Rows of the embed output as a prepared Parquet file (the drift stage's input contract)."""
    n = len(rows["score"])
    ts = np.asarray(rows["ts"] if ts_us is None else ts_us, dtype=np.int64)  # UTC microseconds
    table = pa.table(
        {
            C.PREDICTION_ID: [f"bench-{i}" for i in rows["id"]],
            C.PREDICTION_TS: pa.array(ts, pa.int64()).cast(schema.TIMESTAMP_TYPE),
            C.PREDICTION_LABEL: [schema.CLASS_NAMES[i] for i in rows["pred"]],
            C.ACTUAL_LABEL: [schema.CLASS_NAMES[i] for i in rows["label"]],
            C.PREDICTION_SCORE: rows["score"],
            C.IMAGE_VECTOR: list(rows["emb"]),
            C.IMAGE_LINK: [""] * n,
            C.PROBABILITIES: list(rows["prob"]),
            C.IMAGE_ID: [str(i) for i in rows["id"]],
            C.DEGRADATION: ["none"] * n,
            C.BRIGHTNESS: rows["feat"][:, 0],
            C.CONTRAST: rows["feat"][:, 1],
            C.SHARPNESS: rows["feat"][:, 2],
        },
        schema=schema.PREPARED_ARROW_SCHEMA,
    )
    pq.write_table(table, path)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a rate of k in n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def run_seed(args: argparse.Namespace, seed: int) -> dict:
    """Every calibration, level and scenario for one seed."""
    from components.data.sources import load_idx_folder

    work = Path(args.work) / f"seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    dataset_dir, model_dir, train_file_dir = prepare_model(work, seed, args.training_size, args.epochs)
    tag = model_dir.name.removeprefix("model-")
    train_rows = embed_folder(dataset_dir, model_dir, work / f"embed-train-{tag}", "training,validation")
    train_file_rows = embed_folder(
        train_file_dir, model_dir, work / f"embed-train-file-validation-{tag}", schema.VALIDATION
    )[schema.VALIDATION]

    # Test-file images other than the data stage's validation rows: the reference period, the clean
    # pool, the shifted pools.
    rng = np.random.default_rng(seed)
    test = load_idx_folder(args.source).test
    held_out = {str(i) for i in train_rows[schema.VALIDATION]["id"]}
    free = np.array([i for i in range(len(test.labels)) if f"test-{i:05d}" not in held_out])
    order = rng.permutation(free)
    n_period = PERIOD_DAYS * WINDOW
    period_idx, pool_idx = order[:n_period], order[n_period:]
    shifted_src = pool_idx[:SHIFTED_POOL]
    images, labels, ids, tags = [], [], [], []
    for i in order:
        images.append(test.images[i])
        labels.append(test.labels[i])
        ids.append(f"test-{int(i):05d}")
        tags.append("clean")
    t_rng = np.random.default_rng([seed, 1])
    for shift, strengths in SHIFTS.items():
        if shift == "class_mix":
            continue
        for strength, value in strengths.items():
            moved = transform(test.images[shifted_src], shift, value, t_rng)
            for j, i in enumerate(shifted_src):
                images.append(moved[j])
                labels.append(test.labels[i])
                ids.append(f"{shift}-{strength}-{int(i):05d}")
                tags.append(f"{shift}/{strength}")
    start = np.datetime64("2026-10-01T00:00:00", "s").astype(np.int64)
    seconds = np.full(len(images), start, dtype=np.int64)
    folder = image_folder(work / f"scenario-images-{tag}", images, np.asarray(labels), ids, seconds)
    t0 = time.time()
    emb = embed_folder(folder, model_dir, work / f"embed-scenarios-{tag}", schema.PRODUCTION)[
        schema.PRODUCTION
    ]
    print(
        f"seed {seed}: {len(emb['score'])} scenario images embedded ({time.time() - t0:.0f} s incl. cache)",
        flush=True,
    )
    by_id = {str(i): k for k, i in enumerate(emb["id"])}

    def rows_of(id_list: list[str]) -> dict[str, np.ndarray]:
        k = np.array([by_id[i] for i in id_list])
        return {key: v[k] for key, v in emb.items()}

    # Prepared folder: training and validation (train file), production = the reference period.
    period_rows = rows_of([f"test-{int(i):05d}" for i in period_idx])
    day0 = int(np.datetime64("2026-11-01T00:00:00", "us").astype(np.int64))
    offsets = (np.arange(n_period) // WINDOW) * 86_400_000_000 + rng.integers(0, 86_400_000_000, n_period)
    folders = {}
    for name, validation in (
        ("prepared", train_rows[schema.VALIDATION]),
        ("prepared-train-file", train_file_rows),
    ):
        prepared = folders[name] = work / f"{name}-{tag}"
        prepared.mkdir(exist_ok=True)
        write_prepared(prepared / schema.prepared_file(schema.TRAINING), train_rows[schema.TRAINING])
        write_prepared(prepared / schema.prepared_file(schema.VALIDATION), validation)
        write_prepared(prepared / schema.prepared_file(schema.PRODUCTION), period_rows, day0 + offsets)

    clean_ids = np.array([f"test-{int(i):05d}" for i in pool_idx])
    clean_labels = np.asarray(test.labels)[pool_idx]
    shifted_ids = {
        (s, st): np.array([f"{s}-{st}-{int(i):05d}" for i in shifted_src])
        for s in SHIFTS
        if s != "class_mix"
        for st in STRENGTHS
    }
    w_rng = np.random.default_rng([seed, 2])

    def window(shift: str | None, strength: str, share: float) -> Sample:
        k = int(round(share * WINDOW)) if shift else 0
        if shift == "class_mix":
            classes = w_rng.choice(schema.NUM_CLASSES, int(SHIFTS[shift][strength]), replace=False)
            allowed = np.flatnonzero(np.isin(clean_labels, classes))
            picked = list(clean_ids[w_rng.choice(allowed, k, replace=False)])
            rest = np.setdiff1d(np.arange(len(clean_ids)), np.flatnonzero(np.isin(clean_ids, picked)))
            picked += list(clean_ids[w_rng.choice(rest, WINDOW - k, replace=False)])
        else:
            picked = list(clean_ids[w_rng.choice(len(clean_ids), WINDOW - k, replace=False)])
            if k:
                picked += list(shifted_ids[(shift, strength)][w_rng.choice(SHIFTED_POOL, k, replace=False)])  # type: ignore[index]
        r = rows_of(picked)
        return Sample(r["emb"], r["prob"], r["score"], r["feat"])

    clean = [window(None, "", 0.0) for _ in range(args.clean_windows)]
    scenarios = {
        (s, st, f): [window(s, st, f) for _ in range(args.windows)]
        for s in SHIFTS
        for st in STRENGTHS
        for f in SHARES
    }
    out: dict = {"seed": seed, "detectors": args.detectors, "calibrations": {}}
    for cal_name, (folder_name, overrides) in CALIBRATIONS.items():
        prepared = folders[folder_name]
        t0 = time.time()
        cfg = dataclasses.replace(
            DriftConfig(projection="pca", thumbnails=False, seed=seed, detectors=args.detectors),
            **overrides,  # type: ignore[arg-type]
        )
        inputs = locate_files(prepared, prepared, cfg)
        base = load_baseline(inputs, embedding_dim(inputs), cfg, Rejected())
        cal = calibrate(base, cfg)
        res: dict = {"calibration": base.calibration_source, "levels": {}}
        for lname, level in LEVELS.items():
            clean_verdicts = [cal.test(w, level) for w in clean]
            fa = [v.flagged for v in clean_verdicts]
            # which detectors the false alarms come from, and each detector alone at the level
            clean_fired = {n: int(sum(n in v.fired for v in clean_verdicts)) for n in cal.names}
            clean_alone = {
                n: int(sum(v.by_name(n).p_value <= level for v in clean_verdicts)) for n in cal.names
            }
            verdicts = {key: [cal.test(w, level) for w in ws] for key, ws in scenarios.items()}
            det = {
                f"{s}/{st}/{int(f * 100)}%": float(np.mean([v.flagged for v in vs]))
                for (s, st, f), vs in verdicts.items()
            }
            # which detectors fired on the medium-strength half-window shifts (share of windows)
            fired_medium_50 = {
                s: {
                    name: float(np.mean([name in v.fired for v in verdicts[(s, "medium", 0.5)]]))
                    for name in cal.names
                }
                for s in SHIFTS
            }
            k = int(np.sum(fa))
            medium = [det[f"{s}/medium/50%"] for s in SHIFTS]
            full = [det[f"{s}/{st}/100%"] for s in SHIFTS for st in STRENGTHS]
            medium_full = [det[f"{s}/medium/100%"] for s in SHIFTS]
            res["levels"][lname] = {
                "level": level,
                "clean_flagged": k,
                "clean_windows": len(fa),
                "false_alarm": k / len(fa),
                "wilson95": wilson(k, len(fa)),
                "detection": det,
                "fired_medium_50": fired_medium_50,
                "clean_fired": clean_fired,
                "clean_alone_at_level": clean_alone,
                "medium_50_mean": float(np.mean(medium)),
                "all_100_detected": bool(min(full) == 1.0),
                "min_100": float(min(full)),
                "medium_100_detected": bool(min(medium_full) == 1.0),
                "min_medium_100": float(min(medium_full)),
            }
        res["seconds"] = round(time.time() - t0, 1)
        out["calibrations"][cal_name] = res
        print(f"seed {seed}: {cal_name} done in {res['seconds']} s", flush=True)
    return out


def _fired_by(level_result: dict) -> str:
    """``name: fired; alone`` for the detectors behind a level's clean-window false alarms (newer JSON only)."""
    fired, alone = level_result.get("clean_fired"), level_result.get("clean_alone_at_level", {})
    if fired is None:
        return "n/a"
    parts = [f"{n}: {k}; {alone.get(n, '?')}" for n, k in fired.items() if k or alone.get(n)]
    return ", ".join(parts) or "none"


def medium_100(level_result: dict) -> list[float]:
    """Detection rates of the medium-strength shifts affecting whole windows."""
    return [level_result["detection"][f"{s}/medium/100%"] for s in SHIFTS]


def print_tables(results: list[dict]) -> None:
    """The false-alarm table, the detection table and the gains, as Markdown."""
    print("\n### Clean windows (test file): false alarms, Wilson 95% interval\n")
    print(
        "| seed | calibration | level | flagged / clean windows | rate | 95% interval | within the level "
        "| fired by (detector: windows; alone at the level) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        for cal, res in r["calibrations"].items():
            for lname, lv in res["levels"].items():
                lo, hi = lv["wilson95"]
                print(
                    f"| {r['seed']} | {cal} | {lname}: {lv['level']:.3g} | {lv['clean_flagged']}/{lv['clean_windows']} "
                    f"| {lv['false_alarm']:.3f} | {lo:.3f}-{hi:.3f} | {'yes' if lo <= lv['level'] else 'NO'} "
                    f"| {_fired_by(lv)} |"
                )
    print(
        "\n### Detection: medium-strength 50% shifts (mean, target >= 0.85) and 100% shifts (all detected?)\n"
    )
    print(
        "| seed | calibration | level | medium 50% mean | every medium 100% shift detected (lowest rate) "
        "| every 100% shift, low strengths too (lowest rate) |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        for cal, res in r["calibrations"].items():
            for lname, lv in res["levels"].items():
                print(
                    f"| {r['seed']} | {cal} | {lname} | {lv['medium_50_mean']:.3f} | "
                    f"{'yes' if min(medium_100(lv)) == 1.0 else 'no'} ({min(medium_100(lv)):.2f}) | "
                    f"{'yes' if lv['all_100_detected'] else 'no'} ({lv['min_100']:.2f}) |"
                )
    for lname in LEVELS:
        print(f"\n### Detection rate per shift, strength and share ({lname}; mean over seeds)\n")
        cals = [c for c in CALIBRATIONS if all(c in r["calibrations"] for r in results)]
        print(
            "| shift | strength | " + " | ".join(f"{c} {int(f * 100)}%" for c in cals for f in SHARES) + " |"
        )
        print("|---|---|" + "---|" * (len(cals) * len(SHARES)))
        for s in SHIFTS:
            for st in STRENGTHS:
                cells = [
                    np.mean(
                        [
                            r["calibrations"][c]["levels"][lname]["detection"][f"{s}/{st}/{int(f * 100)}%"]
                            for r in results
                        ]
                    )
                    for c in cals
                    for f in SHARES
                ]
                print(f"| {s} | {st} | " + " | ".join(f"{x:.2f}" for x in cells) + " |")
    print("\n### Gain against train-file (the training baseline's calibration before validation moved)\n")
    print(
        "| seed | level | calibration | false-alarm ratio (new / train-file) | medium 50% detection difference |"
    )
    print("|---|---|---|---|---|")
    for r in results:
        for lname in LEVELS:
            old = r["calibrations"]["train-file"]["levels"][lname]
            for cal in [c for c in CALIBRATIONS if c != "train-file" and c in r["calibrations"]]:
                new = r["calibrations"][cal]["levels"][lname]
                ratio = (
                    f"{new['false_alarm'] / old['false_alarm']:.2f}"
                    if old["false_alarm"]
                    else ("n/a (0/0)" if not new["false_alarm"] else "inf")
                )
                print(
                    f"| {r['seed']} | {lname} | {cal} | {ratio} ({new['false_alarm']:.3f} vs {old['false_alarm']:.3f}) | "
                    f"{new['medium_50_mean'] - old['medium_50_mean']:+.3f} |"
                )


def print_compare(before: list[dict], after: list[dict]) -> None:
    """Before / after (two detector sets, same seeds and windows): false alarms and medium-50% detection."""
    print(
        f"\n### Before ({before[0].get('detectors', 'the five embedding and output detectors')}) / "
        f"after ({after[0].get('detectors', '')})\n"
    )
    print(
        "| seed | calibration | level | clean false alarms before / after (95% interval after) "
        "| medium 50% before / after | lowest medium 100% before / after | lowest 100% (low too) before / after |"
    )
    print("|---|---|---|---|---|---|---|")
    old_by_seed = {r["seed"]: r for r in before}
    for r in after:
        old = old_by_seed.get(r["seed"])
        if old is None:
            continue
        for cal, res in r["calibrations"].items():
            if cal not in old["calibrations"]:
                continue
            for lname, lv in res["levels"].items():
                ov = old["calibrations"][cal]["levels"][lname]
                lo, hi = lv["wilson95"]
                print(
                    f"| {r['seed']} | {cal} | {lname}: {lv['level']:.3g} "
                    f"| {ov['clean_flagged']}/{ov['clean_windows']} / {lv['clean_flagged']}/{lv['clean_windows']} "
                    f"({lo:.3f}-{hi:.3f}) | {ov['medium_50_mean']:.3f} / {lv['medium_50_mean']:.3f} "
                    f"| {min(medium_100(ov)):.2f} / {min(medium_100(lv)):.2f} | {ov['min_100']:.2f} / {lv['min_100']:.2f} |"
                )


def main() -> None:
    """Command line: seeds, work folder, window counts."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument(
        "--work", default="/tmp/drift-scenarios", help="cache: data set, model, embeddings per seed"
    )
    ap.add_argument("--windows", type=int, default=30, help="windows per shift, strength and share")
    ap.add_argument("--clean-windows", type=int, default=300, help="clean windows (at least 100)")
    ap.add_argument("--training-size", type=int, default=30_000)
    ap.add_argument("--epochs", type=float, default=0.0, help="0 = the local profile's default")
    ap.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument(
        "--detectors",
        default=DriftConfig().detectors,
        help="the stage's detectors setting (default: the stage's default, all detectors)",
    )
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument(
        "--compare", help="an earlier --json file (other detectors, same seeds): print before / after too"
    )
    ap.add_argument(
        "--tables-only", help="print the tables of earlier --json files (comma-separated), run nothing"
    )
    args = ap.parse_args()
    if args.clean_windows < 100:
        ap.error("--clean-windows: at least 100")
    if args.tables_only:
        results = [r for f in args.tables_only.split(",") for r in json.loads(Path(f).read_text())]
    else:
        results = [run_seed(args, seed) for seed in args.seeds]
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    print_tables(results)
    if args.compare:
        print_compare(json.loads(Path(args.compare).read_text()), results)


if __name__ == "__main__":
    main()
