"""The data card (Markdown, sample grid inlined) and the PNG grid of clean and degraded samples."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from components.common import schema

GRID_PER_ROW = 10
GRID_SCALE = 3
GRID_LABEL_WIDTH = 96
GRID_CAPTION = 14


def sample_grid_png(production, seed: int) -> bytes:
    """A PNG: one row per degradation kind (clean first), up to 10 production samples each."""
    rng = np.random.default_rng(seed)
    kinds = np.asarray(production.degradation)
    cell = 28 * GRID_SCALE
    shown = [k for k in schema.DEGRADATIONS if (kinds == k).any()]
    width = GRID_LABEL_WIDTH + GRID_PER_ROW * cell
    height = max(1, len(shown)) * (cell + GRID_CAPTION)
    canvas = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for r, kind in enumerate(shown):
        rows = np.flatnonzero(kinds == kind)
        pick = np.sort(rng.choice(rows, size=min(GRID_PER_ROW, len(rows)), replace=False))
        y = r * (cell + GRID_CAPTION)
        draw.text((4, y + cell // 2 - 6), kind, fill=0, font=font)
        for c, i in enumerate(pick):
            img = Image.fromarray(production.images[i], mode="L")
            img = img.resize((img.width * GRID_SCALE, img.height * GRID_SCALE), Image.Resampling.NEAREST)
            x = GRID_LABEL_WIDTH + c * cell
            canvas.paste(img, (x, y))
            name = schema.CLASS_NAMES[int(production.labels[i])]
            draw.text((x + 2, y + cell), name[:13], fill=0, font=font)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_card(config, source, summary, grid_png: bytes) -> str:
    """The Markdown data card: rows per split, class, day and degradation, and the sample grid."""
    splits = list(summary.rows)
    out = [
        "# Data card: Fashion-MNIST with degraded production images",
        "",
        f"Source: {source.description}. Training rows come from its train part, production rows from "
        f"its test part, validation rows from its {config.validation_part} part"
        + (" (disjoint from production)." if config.validation_part == "test" else "."),
        f"Production spans {config.production_days} days from {config.start.isoformat()} to "
        f"{config.end.isoformat()}; days {summary.window[0]} to {summary.window[1]} "
        f"({config.window_days} days) hold degraded images: {config.degraded_share:.0%} of their rows "
        f"rotated by {config.rotation_min:g} to {config.rotation_max:g} degrees either way, "
        f"blurred (Gaussian radius {config.blur_min:g} to {config.blur_max:g} px), or both. "
        "Training and validation are clean and stamped before production.",
        f"Seed: {config.seed}.",
        "",
        "## Rows per split",
        "",
        _table(["split", "rows"], [[s, summary.rows[s]] for s in splits]),
        "",
        "## Rows per degradation (production)",
        "",
        _table(["degradation", "rows"], [[k, v] for k, v in summary.degraded.items()]),
        "",
        "## Rows per class",
        "",
        _table(
            ["class", *splits],
            [[name, *(summary.per_class[s][name] for s in splits)] for name in schema.CLASS_NAMES],
        ),
        "",
        "## Production rows per day",
        "",
        _table(
            ["date", "rows", *schema.DEGRADATIONS],
            [[d["date"], d["rows"], *(d[k] for k in schema.DEGRADATIONS)] for d in summary.per_day],
        ),
        "",
        "## Rows kept aside from the source",
        "",
    ]
    rejected = [(p.name, i, why) for p in (source.train, source.test) for i, why in p.rejected]
    if rejected:
        out.append(f"{len(rejected)} row(s) could not be used; the first ones:")
        out.append("")
        out.append(_table(["part", "source index", "reason"], [list(r) for r in rejected[:20]]))
    else:
        out.append("None: every source row was usable.")
    out += [
        "",
        "## Parameters",
        "",
        _table(["parameter", "value"], [[k, f"`{v}`"] for k, v in config.parameters().items()]),
        "",
        "## Samples",
        "",
        "One row per kind of degradation, production images (class name under each).",
        "",
        f"![sample grid](data:image/png;base64,{base64.b64encode(grid_png).decode()})",
        "",
    ]
    return "\n".join(out)
