"""Synthetic gemstone photographs: the embedded default dataset.

Nothing is downloaded or committed: `make_demo_data` draws faceted stones
procedurally with Pillow and numpy. Each variety has a colour range (hue,
saturation, tone) that overlaps its neighbours' (ruby and almandine share reds,
emerald and tsavorite share greens), preferred cuts, and typical inclusions, so
colour alone does not solve the task. Every stone is photographed two or three
times (other background, angle, light, scale): those photos share a stone id,
which is what a group-aware split must keep together.

Output, both input layouts a user may have:
    OUT/images/<Variety>/<variety>_<stone>_<view>.jpg   folder of class folders
    OUT/manifest.csv                                     path,label,family,stone_id
"""
from __future__ import annotations

import colorsys
import csv
import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# The mineral family of each variety (the demo's two-level label hierarchy).
VARIETIES: Dict[str, str] = {
    "Ruby": "Corundum",
    "Sapphire Blue": "Corundum",
    "Emerald": "Beryl",
    "Aquamarine": "Beryl",
    "Amethyst": "Quartz",
    "Citrine": "Quartz",
    "Almandine": "Garnet",
    "Tsavorite": "Garnet",
}
CUTS = ("round", "oval", "cushion", "emerald", "pear")


@dataclasses.dataclass(frozen=True)
class _Look:
    hue: Tuple[float, float]  # degrees; may wrap past 360
    saturation: Tuple[float, float]
    value: Tuple[float, float]
    cut_weights: Tuple[float, ...]  # over CUTS
    inclusion: str  # "silk" (needles), "jardin" (mossy), "crystals" (dots), "clean"


_LOOKS: Dict[str, _Look] = {
    "Ruby": _Look((340, 372), (0.70, 0.95), (0.55, 0.90), (3, 3, 2, 1, 1), "silk"),
    "Almandine": _Look((345, 380), (0.60, 0.90), (0.30, 0.60), (3, 2, 2, 1, 1), "crystals"),
    "Sapphire Blue": _Look((210, 245), (0.60, 0.95), (0.35, 0.80), (2, 3, 3, 1, 1), "silk"),
    "Aquamarine": _Look((180, 212), (0.25, 0.55), (0.70, 0.95), (1, 2, 1, 3, 2), "clean"),
    "Emerald": _Look((125, 160), (0.55, 0.90), (0.35, 0.75), (1, 1, 1, 5, 1), "jardin"),
    "Tsavorite": _Look((95, 135), (0.60, 0.95), (0.50, 0.90), (3, 2, 2, 1, 1), "crystals"),
    "Amethyst": _Look((265, 300), (0.40, 0.85), (0.40, 0.85), (2, 2, 2, 1, 2), "clean"),
    "Citrine": _Look((28, 52), (0.55, 0.95), (0.70, 0.97), (2, 2, 3, 1, 1), "clean"),
}
_BACKGROUNDS = ((245, 245, 242), (30, 30, 34), (210, 200, 185), (25, 35, 70), (120, 120, 125), (235, 225, 235))
_SUPERSAMPLE = 2  # draw at twice the size, then downscale: cheap anti-aliasing


@dataclasses.dataclass(frozen=True)
class DemoDataSummary:
    out_dir: Path
    n_images: int
    n_stones: int
    classes: Tuple[str, ...]


def slug(variety: str) -> str:
    return variety.lower().replace(" ", "_")


def _outline(cut: str, n: int = 48) -> np.ndarray:
    """Unit outline (x, y) of a cut, centred on the origin, radius about 1."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = np.cos(t), np.sin(t)
    if cut == "oval":
        x = x * 0.72
    elif cut == "cushion":  # a superellipse: a square with rounded sides
        x = np.sign(x) * np.abs(x) ** 0.55 * 0.9
        y = np.sign(y) * np.abs(y) ** 0.55 * 0.9
    elif cut == "emerald":  # a rectangle with clipped corners
        x, y = np.clip(x * 1.4, -0.7, 0.7), np.clip(y * 1.4, -1.0, 1.0)
        corner = np.abs(x) / 0.7 + np.abs(y) / 1.0 > 1.75
        scale = np.where(corner, 1.75 / (np.abs(x) / 0.7 + np.abs(y) + 1e-9), 1.0)
        x, y = x * scale, y * scale
    elif cut == "pear":  # a teardrop pointing up
        x = x * (0.55 + 0.25 * np.sin(t)) * 1.1
        y = y * 1.0
    return np.stack([x, y], axis=1)


def _stone_colour(look: _Look, rng: np.random.Generator) -> Tuple[float, float, float]:
    hue = rng.uniform(*look.hue) % 360 / 360
    return colorsys.hsv_to_rgb(hue, rng.uniform(*look.saturation), rng.uniform(*look.value))


def _stone(variety: str, rng: np.random.Generator) -> dict:
    """What stays the same across photos of one stone."""
    look = _LOOKS[variety]
    weights = np.asarray(look.cut_weights, dtype=float)
    return {
        "cut": CUTS[rng.choice(len(CUTS), p=weights / weights.sum())],
        "colour": _stone_colour(look, rng),
        "facets": int(rng.integers(8, 17)),
        "table": rng.uniform(0.35, 0.6),  # table facet size relative to the girdle
        "facet_shades": rng.uniform(0.45, 1.25, size=64),
        "inclusion": look.inclusion if rng.random() < 0.6 else "clean",
        "inclusion_seed": int(rng.integers(1 << 31)),
    }


def _shot(rng: np.random.Generator) -> dict:
    """What changes from one photo to the next."""
    return {
        "background": _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))],
        "angle": rng.uniform(0, 360),
        "scale": rng.uniform(0.55, 0.85),
        "offset": rng.uniform(-0.08, 0.08, size=2),
        "light": rng.uniform(0.8, 1.15),  # exposure
        "warmth": rng.uniform(-0.06, 0.06),  # colour temperature of the light
        "light_angle": rng.uniform(0, 2 * np.pi),
        "noise": rng.uniform(1.0, 6.0),
        "blur": rng.uniform(0.0, 0.8),
    }


def _shade(rgb: Tuple[float, float, float], factor: float, shot: dict) -> Tuple[int, int, int]:
    r, g, b = (c * factor * shot["light"] for c in rgb)
    r, b = r * (1 + shot["warmth"]), b * (1 - shot["warmth"])
    return tuple(int(np.clip(c * 255, 0, 255)) for c in (r, g, b))


def _draw_inclusions(draw: ImageDraw.ImageDraw, stone: dict, centre: np.ndarray, radius: float) -> None:
    rng = np.random.default_rng(stone["inclusion_seed"])
    kind = stone["inclusion"]
    if kind == "silk":  # fine rutile needles
        for _ in range(int(rng.integers(4, 10))):
            p = centre + rng.uniform(-0.5, 0.5, 2) * radius
            d = np.array([math.cos(rng.uniform(0, math.pi)), math.sin(rng.uniform(0, math.pi))]) * radius * 0.25
            draw.line([tuple(p - d), tuple(p + d)], fill=(235, 235, 225), width=1)
    elif kind == "jardin":  # mossy dark patches
        for _ in range(int(rng.integers(3, 7))):
            p = centre + rng.uniform(-0.5, 0.5, 2) * radius
            r = radius * rng.uniform(0.03, 0.08)
            draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=(20, 45, 25))
    elif kind == "crystals":  # small dark included crystals
        for _ in range(int(rng.integers(2, 6))):
            p = centre + rng.uniform(-0.5, 0.5, 2) * radius
            r = radius * rng.uniform(0.015, 0.04)
            draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=(15, 10, 10))


def _render(stone: dict, shot: dict, size: int, rng: np.random.Generator) -> Image.Image:
    big = size * _SUPERSAMPLE
    # Background: a soft vertical gradient, as under a photo lamp.
    ramp = np.linspace(1.08, 0.88, big)[:, None, None]
    bg = np.clip(np.asarray(shot["background"], dtype=float)[None, None, :] * ramp, 0, 255)
    canvas = Image.fromarray(np.broadcast_to(bg, (big, big, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)

    radius = big / 2 * shot["scale"]
    centre = np.array([big / 2, big / 2]) + shot["offset"] * big
    theta = np.deg2rad(shot["angle"])
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    outline = _outline(stone["cut"], n=stone["facets"] * 2) @ rotation.T * radius + centre
    table = (outline - centre) * stone["table"] + centre

    # Shadow, then the pavilion/crown facets (triangles from the girdle to the
    # table), each lit according to where it faces, then the table facet.
    draw.polygon([tuple(p + radius * 0.06) for p in outline], fill=tuple(int(c * 0.6) for c in shot["background"]))
    light = np.array([math.cos(shot["light_angle"]), math.sin(shot["light_angle"])])
    n = len(outline)
    for i in range(n):
        j = (i + 1) % n
        mid = (outline[i] + outline[j]) / 2 - centre
        facing = float(mid @ light / (np.linalg.norm(mid) + 1e-9))
        factor = stone["facet_shades"][i % 64] * (0.85 + 0.3 * facing)
        colour = _shade(stone["colour"], factor, shot)
        draw.polygon([tuple(outline[i]), tuple(outline[j]), tuple(table[j]), tuple(table[i])], fill=colour)
        draw.polygon([tuple(table[i]), tuple(table[j]), tuple(centre)], fill=_shade(stone["colour"], factor * 0.8, shot))
    draw.polygon([tuple(p) for p in table], fill=_shade(stone["colour"], 1.05, shot))
    # A star of facet edges across the table, as in a brilliant cut.
    for i in range(0, n, 2):
        draw.line([tuple(table[i]), tuple(centre)], fill=_shade(stone["colour"], 0.7, shot), width=1)
    _draw_inclusions(draw, stone, centre, radius * stone["table"])
    # Specular highlights: a few bright glints where the light falls.
    for _ in range(int(rng.integers(2, 5))):
        p = centre + light * radius * rng.uniform(0.1, 0.6) + rng.normal(0, radius * 0.15, 2)
        r = radius * rng.uniform(0.03, 0.07)
        draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=(255, 255, 250))

    image = canvas.resize((size, size), Image.BILINEAR)
    if shot["blur"] > 0.2:
        image = image.filter(ImageFilter.GaussianBlur(shot["blur"]))
    pixels = np.asarray(image, dtype=float) + rng.normal(0, shot["noise"], (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def render_gemstone(variety: str, rng: np.random.Generator, size: int = 128) -> Image.Image:
    """One photograph of a new stone of `variety` (a quick look at what the generator draws)."""
    if variety not in _LOOKS:
        raise ValueError(f"unknown variety {variety!r}; known: {', '.join(VARIETIES)}")
    return _render(_stone(variety, rng), _shot(rng), size, rng)


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def make_demo_data(out_dir, per_class: int = 40, seed: int = 0, size: int = 128, progress: bool = False) -> DemoDataSummary:
    """Writes `per_class` photographs of each variety; reuses an identical earlier output."""
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    out_dir = Path(out_dir)
    params = {"per_class": per_class, "seed": seed, "size": size, "version": 1}
    stamp = out_dir / "demo_data.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("params") == params:
        return _summary_from_stamp(out_dir, json.loads(stamp.read_text()))

    rows: List[Tuple[str, str, str, str]] = []
    varieties = list(VARIETIES)
    bar = _progress_bar(len(varieties) * per_class, progress)
    for class_index, variety in enumerate(varieties):
        rng = np.random.default_rng([seed, class_index])
        folder = out_dir / "images" / variety
        folder.mkdir(parents=True, exist_ok=True)
        written, stone_number = 0, 0
        while written < per_class:
            stone = _stone(variety, rng)
            stone_id = f"{slug(variety)}-{stone_number:03d}"
            for view in range(min(int(rng.integers(2, 4)), per_class - written)):
                path = folder / f"{slug(variety)}_{stone_number:03d}_{view}.jpg"
                path.write_bytes(_jpeg(_render(stone, _shot(rng), size, rng), quality=int(rng.integers(80, 96))))
                rows.append((str(path.relative_to(out_dir)), variety, VARIETIES[variety], stone_id))
                written += 1
                bar.update(1)
            stone_number += 1
    bar.close()

    with open(out_dir / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "family", "stone_id"])
        writer.writerows(rows)
    record = {"params": params, "n_images": len(rows), "n_stones": len({r[3] for r in rows}), "classes": varieties}
    stamp.write_text(json.dumps(record, indent=2))
    return _summary_from_stamp(out_dir, record)


def _summary_from_stamp(out_dir: Path, record: dict) -> DemoDataSummary:
    return DemoDataSummary(out_dir, record["n_images"], record["n_stones"], tuple(record["classes"]))


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="demo data", disable=not enabled)
