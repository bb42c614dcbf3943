"""The explanation pictures: the map lies over the photo where the model looked, and the figure draws the answer."""
import io

import pytest
from PIL import Image

from gemstone import contract, overlay

RECORD = {"label": "Ruby", "confidence": 0.5, "top_k": [{"label": "Ruby", "score": 0.5},
                                                       {"label": "Spinel", "score": 0.25},
                                                       {"label": "Garnet", "score": 0.125}],
          "family": "Corundum", "family_confidence": 0.55, "needs_review": False, "known": True,
          "review_reason": None}


def _png(image):
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _photo(size=(200, 100), colour=(120, 120, 120)):
    return _png(Image.new("RGB", size, colour))


def _left_half_looked_at(size=(32, 16)):
    """A heatmap as the explain signature gives it (smaller, same aspect ratio): 255 on the left, 0 on the right."""
    heat = Image.new("L", size, 0)
    heat.paste(255, (0, 0, size[0] // 2, size[1]))
    return _png(heat)


def test_the_map_colours_the_photo_where_the_model_looked_only():
    result = overlay.overlay(_photo(), _left_half_looked_at())
    assert result.size == (200, 100) and result.mode == "RGB"
    looked, ignored = result.getpixel((20, 50)), result.getpixel((180, 50))
    assert ignored == (120, 120, 120)  # where the map is 0 the photo shows unchanged
    hot = tuple(overlay.PALETTE[-3:])
    expected = tuple(round(g + (h - g) * overlay.OPACITY) for g, h in zip((120, 120, 120), hot))
    assert all(abs(a - b) <= 2 for a, b in zip(looked, expected))  # the hottest colour at OPACITY


def test_large_photos_give_an_overlay_of_at_most_max_side():
    result = overlay.overlay(_photo((2000, 1000)), _left_half_looked_at(), max_side=300)
    assert result.size == (300, 150)
    decoded = Image.open(io.BytesIO(overlay.overlay_png(_photo(), _left_half_looked_at())))
    assert decoded.format == "PNG" and decoded.size == (200, 100)


def test_the_colour_map_runs_from_cool_to_hot():
    assert len(overlay.PALETTE) == 256 * 3
    cold, hot = overlay.PALETTE[:3], overlay.PALETTE[-3:]
    assert cold[2] > cold[0] and hot[0] > hot[2]  # blue for 0, red for 255


@pytest.mark.parametrize("changes, words", [
    ({}, "Ruby"),
    ({"needs_review": True, "known": False, "review_reason": contract.NOT_A_GEMSTONE},
     "Not a gemstone photo (closest variety: Ruby)"),
    ({"needs_review": True, "known": False, "review_reason": contract.UNFAMILIAR_VARIETY},
     "Not a variety this model knows (closest: Ruby)"),
    ({"needs_review": True, "review_reason": contract.LOW_CONFIDENCE}, "Ruby, low confidence: needs expert review"),
])
def test_the_headline_is_the_contracts_verdict(changes, words):
    assert overlay.headline({**RECORD, **changes}) == words


def test_the_review_line_says_why():
    assert overlay.review_line(RECORD) == "No review needed"
    assert "50%" in overlay.review_line({**RECORD, "needs_review": True, "review_reason": contract.LOW_CONFIDENCE})
    full = {"label": "Ruby", "top_k_labels": ["Ruby", "Spinel"], "top_k_scores": [0.75, 0.25]}
    assert overlay.top_k(full) == [("Ruby", 0.75), ("Spinel", 0.25)]


def test_the_figure_draws_bars_as_long_as_the_scores():
    picture = overlay.figure(_photo(), _left_half_looked_at(), RECORD, title="stone.jpg")
    assert picture.width == overlay.MARGIN * 3 + overlay.PANEL * 2
    bar_width = picture.width - 2 * overlay.MARGIN - overlay.LABEL_WIDTH - 70
    lengths = []
    for y in range(picture.height):
        row = [picture.getpixel((x, y)) for x in range(picture.width)]
        if overlay.BAR in row:
            lengths.append(sum(1 for pixel in row if pixel == overlay.BAR))
    bars = sorted(set(lengths), reverse=True)
    assert len(bars) == 3  # one length per variety, each drawn on several rows
    for length, score in zip(bars, (0.5, 0.25, 0.125)):
        assert abs(length - bar_width * score) <= 2
    # The photo and the overlay side by side: the overlay's left half is coloured, the photo's is not.
    top = overlay.MARGIN + 22 + 40 + overlay.PANEL // 2
    assert picture.getpixel((overlay.MARGIN + 10, top)) == (120, 120, 120)
    assert picture.getpixel((2 * overlay.MARGIN + overlay.PANEL + 10, top)) != (120, 120, 120)
