"""The release gate's "must hold" experiment: a plain model against one trained with rotation + blur.

    .venv/bin/python benchmarks/release_gate.py [--output-dir /tmp/release-gate] [--param name=value ...]

Under kfp.local, on the default data (the data stage's Fashion-MNIST with a degraded production
week), with a fresh model registry under ``--output-dir``:

1. the training pipeline without augmentation: evaluate finds no production model, the gate
   promotes it (v1, production);
2. the same pipeline with ``augment=rotation,blur`` (the data stage's rotation and blur strengths)
   and ``drift_uri`` = run 1's drift table (its flagged windows are the drifted slice the gate
   wants the new model better on): evaluate compares it with v1 on the same rows (validation and
   the labelled production week), and the gate decides.

Printed: each model's accuracy per slice (the degraded slices: rotate, blur, rotate+blur, drifted;
the clean ones: none, validation; overall) with the paired difference and its interval, whether
the gate checked and passed it, the decision and its reasons, what ``augment=auto`` would choose
from run 1's drift explanation, and the wall time of each run. ``--param`` sets any other training
pipeline parameter of both runs (e.g. ``training_size=3000`` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from components.common.explanation import resolve_augment
from components.common.registry import open_registry
from components.pipelines.local import run_local

DEGRADED = ("degradation=rotate", "degradation=blur", "degradation=rotate+blur", "drift=drifted")
CLEAN = ("degradation=none", "split=validation", "drift=not drifted")
REGISTERED_MODEL = "fashion-mnist-classifier"


def _params(texts: list[str]) -> dict[str, str]:
    out = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep:
            raise SystemExit(f"--param {text!r}: expected name=value")
        out[name.strip()] = value
    return out


def _run(output: Path, params: dict, label: str) -> tuple[dict, float]:
    print(f"\n== {label}: training pipeline with {json.dumps(params)}", flush=True)
    started = time.perf_counter()
    paths = run_local(output, params)
    return paths, time.perf_counter() - started


def _evaluation(paths: dict) -> dict:
    """The evaluate task's ``evaluation`` JSON of a run (beside the train task's folder)."""
    run_dir = Path(paths["model"]).parents[1]
    return json.loads((run_dir / "evaluate" / "evaluation").read_text())


def _label(s: dict) -> str:
    return "overall" if s["kind"] == "overall" else f"{s['kind']}={s['name']}"


def _pct(x: float | None) -> str:
    return "   -  " if x is None else f"{100 * x:5.1f}%"


def slice_table(evaluation: dict) -> list[str]:
    """The slices of interest: rows, both accuracies, the difference with its interval, the gate's view."""
    by_label = {_label(s): s for s in evaluation["slices"]}
    lines = [
        f"{'slice':34} {'rows':>6}  {'plain (v1)':>10}  {'rot+blur':>9}  {'difference [95% CI]':>26}  gate",
    ]
    for group, labels in (("degraded", DEGRADED), ("clean", CLEAN), ("all", ("overall",))):
        for label in labels:
            s = by_label.get(label)
            if s is None:
                continue
            prod = (s.get("production") or {}).get("accuracy")
            cand = s["candidate"]["accuracy"]
            diff = s.get("difference")
            ci = s.get("difference_ci") or [None, None]
            diff_text = (
                "-"
                if diff is None
                else f"{100 * diff:+5.1f} pts [{100 * ci[0]:+5.1f}, {100 * ci[1]:+5.1f}]"
                if None not in ci
                else f"{100 * diff:+5.1f} pts"
            )
            gate = (
                "not checked"
                if not s.get("checked_by_gate")
                else {True: "passed", False: "FAILED", None: "-"}[s.get("passed")]
            )
            lines.append(
                f"{group + ': ' + label:34} {s['rows']:>6}  {_pct(prod):>10}  {_pct(cand):>9}  {diff_text:>26}  {gate}"
            )
    return lines


def largest_loss(evaluation: dict) -> str:
    """The checked slice the candidate loses most on, and the margin at which that rule would pass."""
    checked = [
        s for s in evaluation["slices"] if s.get("checked_by_gate") and s.get("difference") is not None
    ]
    if not checked:
        return "no slice was compared (no production model)"
    worst = min(checked, key=lambda s: s["difference"])
    low = (worst.get("difference_ci") or [None])[0]
    return (
        f"largest loss on a slice the gate checks: {_label(worst)} ({worst['rows']} rows) "
        f"{100 * worst['difference']:+.1f} pts (95% CI low {100 * low:+.1f}): the not-worse rules pass with "
        f"gate_margin above {-worst['difference']:.3f} (gate_use_ci: above {-low:.3f})"
        if worst["difference"] < 0 and low is not None
        else f"no checked slice is worse (smallest difference {100 * worst['difference']:+.1f} pts)"
    )


def report(evaluation: dict) -> None:
    """Print the second run's comparison: the slice table, the largest loss, the decision and reasons."""
    print("\n== The robust model (rotation+blur) against the plain one (production v1), same rows")
    print("\n".join(slice_table(evaluation)))
    print(largest_loss(evaluation))
    print(f"\ngate decision: {evaluation['decision']}")
    for reason in evaluation["reasons"]:
        print(f"  - {reason}")


def main(argv: list[str] | None = None) -> int:
    """Run both trainings, print the figures; exit 0 when both runs finished."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output-dir", type=Path, default=Path("/tmp/release-gate"))
    p.add_argument("--param", action="append", default=[], help="name=value, for both runs")
    p.add_argument("--keep", action="store_true", help="keep an existing --output-dir (default: start fresh)")
    p.add_argument(
        "--report-only", action="store_true", help="print the figures of the runs already in --output-dir"
    )
    args = p.parse_args(argv)
    if args.report_only:
        (evaluation,) = (args.output_dir / "robust").glob("*/evaluate/evaluation")
        report(json.loads(evaluation.read_text()))
        return 0
    if args.output_dir.exists() and not args.keep:
        shutil.rmtree(args.output_dir)
    registry = args.output_dir / "registry"
    common = {"registry_uri": str(registry), "registered_model": REGISTERED_MODEL, **_params(args.param)}

    plain, t_plain = _run(args.output_dir / "plain", common, "run 1, no augmentation")
    first = _evaluation(plain)
    print(f"run 1 gate: {first['decision']} ({'; '.join(first['reasons'])})")
    auto, why = resolve_augment("auto", plain["drift_table"])
    print(
        f"augment=auto on run 1's drift explanation would choose: {','.join(auto) or 'none'} ({'; '.join(why)})"
    )

    robust, t_robust = _run(
        args.output_dir / "robust",
        {**common, "augment": "rotation,blur", "drift_uri": plain["drift_table"]},
        "run 2, augment=rotation,blur",
    )
    second = _evaluation(robust)
    reg = open_registry(str(registry), REGISTERED_MODEL)
    production = reg.production()

    report(second)
    print(
        "registry: "
        + ", ".join(f"{v.version} {v.stage}" for v in reg.versions())
        + f"; production now {production.version if production else 'none'}"
    )
    print(f"wall time: run 1 {t_plain:.0f} s, run 2 {t_robust:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
