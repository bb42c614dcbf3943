"""Pictures of an explanation: where the model looked, over the photo, and the figure `gemstone explain` writes.

The model's `explain` signature returns, per photo, `heatmap_png`: a greyscale
PNG of the saliency map (0 = ignored, 255 = looked at most) at the photo's
aspect ratio (gemstone.contract.HEATMAP_OUTPUT). This module colours it and lays
it over the photo, semi-transparent, so that the stone shows through where the
model did not look (`overlay`), and draws the whole answer as one picture
(`figure`): the photo and the overlay side by side, the verdict, the top-3
varieties as bars with percentages, and the family with its confidence.

Pillow only (no TensorFlow, no matplotlib): the server calls it per request.
"""
from __future__ import annotations

import io
from typing import Any, Mapping, Sequence, Tuple

from PIL import Image, ImageDraw, ImageFont

from gemstone import contract

# The colour map: dark blue (ignored) through teal, yellow and orange to red (looked at most), as a
# 256-entry palette interpolated between these anchors (position 0-255, RGB).
_ANCHORS = ((0, (30, 20, 90)), (70, (20, 110, 170)), (130, (40, 180, 120)), (180, (240, 220, 40)),
            (220, (245, 130, 30)), (255, (220, 30, 30)))
OPACITY = 0.65  # how much of the colour covers the photo where the model looked most
OVERLAY_MAX_SIDE = 512  # px: overlays are for the eye, not for measuring


def _palette() -> list:
    values = []
    for (start, low), (end, high) in zip(_ANCHORS, _ANCHORS[1:]):
        for position in range(start, end):
            t = (position - start) / (end - start)
            values.extend(round(a + (b - a) * t) for a, b in zip(low, high))
    values.extend(_ANCHORS[-1][1])
    return values


PALETTE = _palette()


def _rgb(photo: Any) -> Image.Image:
    """An RGB picture from encoded bytes or a PIL image."""
    image = photo if isinstance(photo, Image.Image) else Image.open(io.BytesIO(photo))
    return image.convert("RGB")


def colour_map(heatmap: Image.Image) -> Image.Image:
    """A greyscale map as RGB in the colour map's colours."""
    coloured = heatmap.convert("L").convert("P")
    coloured.putpalette(PALETTE)
    return coloured.convert("RGB")


def overlay(photo: Any, heatmap_png: bytes, opacity: float = OPACITY,
            max_side: int = OVERLAY_MAX_SIDE) -> Image.Image:
    """The photo with the coloured map over it: opaque in proportion to where the model looked.

    `photo`: the encoded photo the model was given (or a PIL image of it); `heatmap_png`: its
    `heatmap_png` output. The map is stretched to the photo (they share the aspect ratio); the
    result is at most `max_side` pixels a side.
    """
    picture = _rgb(photo)
    if max(picture.size) > max_side:
        picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    heat = Image.open(io.BytesIO(heatmap_png)).convert("L").resize(picture.size, Image.Resampling.BILINEAR)
    mask = heat.point(lambda v: round(v * opacity))
    return Image.composite(colour_map(heat), picture, mask)


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def overlay_png(photo: Any, heatmap_png: bytes, **kwargs) -> bytes:
    """`overlay` as PNG bytes."""
    return png_bytes(overlay(photo, heatmap_png, **kwargs))


# --- The figure ---------------------------------------------------------------------------------

PANEL = 320  # px: the side of the box the photo and the overlay are each fitted into
LABEL_WIDTH = 230  # px: the column of variety names before the bars
MARGIN = 24
INK, MUTED, ALERT, BAR, TRACK = (25, 30, 40), (95, 100, 115), (175, 30, 30), (40, 95, 170), (225, 230, 238)


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _fitted(image: Image.Image, side: int) -> Image.Image:
    """Scaled, up or down, to fill a `side` x `side` box along its longer side."""
    scale = side / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.LANCZOS)


def _clipped(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """The text, shortened with an ellipsis to fit `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def headline(record: Mapping[str, Any]) -> str:
    """contract.verdict, as a sentence begins."""
    text = contract.verdict(record)
    return text[:1].upper() + text[1:]


def top_k(record: Mapping[str, Any]) -> Sequence[Tuple[str, float]]:
    """(label, score) of the top varieties, from a compact or a full record."""
    if "top_k" in record:
        return [(entry["label"], float(entry["score"])) for entry in record["top_k"]]
    return list(zip(record["top_k_labels"], (float(s) for s in record["top_k_scores"])))


def review_line(record: Mapping[str, Any]) -> str:
    """Why the answer needs a gemmologist, or that it does not."""
    if not record.get("needs_review"):
        return "No review needed"
    reason = record.get("review_reason") or contract.LOW_CONFIDENCE
    why = {contract.NOT_A_GEMSTONE: "the photo does not look like a gemstone photo",
           contract.UNFAMILIAR_VARIETY: "the answer is spread over several varieties, as for one it never learned",
           contract.LOW_CONFIDENCE: f"confidence {float(record['confidence']):.0%} is under the review threshold"}
    return f"Needs review: {why.get(reason, reason)}"


def figure(photo: Any, heatmap_png: bytes, record: Mapping[str, Any], title: str = "") -> Image.Image:
    """The explanation of one photo as a picture.

    From the top: `title` (e.g. the file name), the verdict (red when the answer needs review),
    the photo and the overlay side by side, the top-3 varieties as bars with percentages, the
    family with its confidence, and whether and why the answer needs review. `record`: the
    photo's prediction record, compact or full.
    """
    picture = _rgb(photo)
    panels = [_fitted(picture, PANEL), _fitted(overlay(picture, heatmap_png), PANEL)]
    small, body, large = _font(14), _font(17), _font(24)
    ranked = top_k(record)
    width = MARGIN * 3 + PANEL * 2
    height = MARGIN + (22 if title else 0) + 40 + PANEL + 28 + 34 * len(ranked) + 70 + MARGIN
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = MARGIN
    if title:
        draw.text((MARGIN, y), title, font=small, fill=MUTED)
        y += 22
    alert = ALERT if record.get("needs_review") else INK
    draw.text((MARGIN, y), _clipped(draw, headline(record), large, width - 2 * MARGIN), font=large, fill=alert)
    y += 40
    for i, (panel, caption) in enumerate(zip(panels, ("Photo", "Where the model looked"))):
        x = MARGIN + i * (PANEL + MARGIN)
        canvas.paste(panel, (x + (PANEL - panel.width) // 2, y + (PANEL - panel.height) // 2))
        draw.text((x, y + PANEL + 4), caption, font=small, fill=MUTED)
    y += PANEL + 28
    bar_width = width - 2 * MARGIN - LABEL_WIDTH - 70
    for label, score in ranked:
        draw.text((MARGIN, y + 2), _clipped(draw, label, body, LABEL_WIDTH - 10), font=body, fill=INK)
        x = MARGIN + LABEL_WIDTH
        draw.rectangle((x, y + 4, x + bar_width, y + 22), fill=TRACK)
        draw.rectangle((x, y + 4, x + max(1, round(bar_width * score)), y + 22), fill=BAR)
        draw.text((x + bar_width + 10, y + 2), f"{score:.1%}", font=body, fill=INK)
        y += 34
    family = f"Family: {record['family']} ({float(record['family_confidence']):.1%})"
    draw.text((MARGIN, y + 6), family, font=body, fill=INK)
    draw.text((MARGIN, y + 36), review_line(record), font=body,
              fill=ALERT if record.get("needs_review") else MUTED)
    return canvas
