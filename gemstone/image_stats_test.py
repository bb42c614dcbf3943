import numpy as np
from PIL import Image, ImageFilter

from gemstone import contract, image_stats


def _picture(rgb=(200, 30, 40), background=235, seed=0):
    rng = np.random.default_rng(seed)
    pixels = np.full((96, 96, 3), background, np.uint8)
    pixels[20:76, 20:76] = rgb
    pixels[20:76:4, 20:76] = 255  # facet edges: fine detail for the sharpness measure
    noise = rng.normal(0, 3, pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def test_measures_move_the_right_way():
    base = image_stats.measure(_picture())
    darker = image_stats.measure(Image.eval(_picture(), lambda v: v // 2))
    blurred = image_stats.measure(_picture().filter(ImageFilter.GaussianBlur(3)))
    grey = image_stats.measure(_picture().convert("L").convert("RGB"))
    assert darker.brightness < base.brightness - 0.3
    assert blurred.sharpness < base.sharpness - 0.5
    assert grey.saturation < 0.05 < base.saturation
    assert image_stats.measure(_picture().resize((192, 96))).aspect_ratio == 2.0
    assert abs(sum(base.hue_histogram) - 1) < 1e-3
    assert int(np.argmax(base.hue_histogram)) in (0, contract.HUE_BINS - 1)  # red


def _rows(label, split, brightness, n, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for value in rng.normal(brightness, 0.03, n):
        stats = {"brightness": float(value), "contrast": 0.2, "saturation": 0.5, "sharpness": 1.5,
                 "aspect_ratio": 1.0, "hue_histogram": [1.0] + [0.0] * 11}
        rows.append({"label": label, "split": split, "stats": stats})
    return rows


def test_a_class_with_much_darker_eval_photos_is_flagged_and_noise_is_not():
    rows = (_rows("Ruby", "train", 0.7, 30, 0) + _rows("Ruby", "eval", 0.4, 8, 1)
            + _rows("Emerald", "train", 0.7, 30, 2) + _rows("Emerald", "eval", 0.7, 8, 3))
    result = image_stats.compare_splits(rows)
    flagged = [(s["label"], s["split"], s["statistic"]) for s in result["shifts"]]
    assert flagged == [("Ruby", "eval", "brightness")]
    assert "lower brightness" in result["shifts"][0]["message"]
    assert result["means"]["Ruby"]["eval"]["brightness"] < 0.5


def test_plot_is_written(tmp_path):
    rows = _rows("Ruby", "train", 0.7, 5, 0) + _rows("Ruby", "eval", 0.6, 3, 1)
    path = image_stats.plot(rows, tmp_path / "stats.png")
    with Image.open(path) as image:
        assert image.size[0] > 500
