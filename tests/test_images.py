"""Hostile and unusual files, all generated here (nothing committed)."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from gemstone import images
from gemstone.images import ImageRejected


def _encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _marked(size=(60, 40)):
    """Grey picture with a red block in its top-left corner, to check orientation."""
    pixels = np.full((size[1], size[0], 3), 128, np.uint8)
    pixels[:10, :10] = (255, 0, 0)
    return Image.fromarray(pixels)


def _decoded(loaded):
    return np.asarray(Image.open(io.BytesIO(loaded.data)).convert("RGB"), dtype=int)


def _reason(path, **kwargs):
    with pytest.raises(ImageRejected) as info:
        images.load_image_file(path, **kwargs)
    return info.value.reason


# --- rejected, each with its reason ------------------------------------------------

def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert _reason(tmp_path / "empty.jpg") == "empty_file"


def test_text_named_jpg(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not a photo")
    assert _reason(tmp_path / "notes.jpg") == "not_an_image"


def test_jpeg_cut_in_half(tmp_path):
    data = _encode(_marked((400, 300)), "JPEG")
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    assert _reason(tmp_path / "half.jpg") == "truncated"


def test_png_cut_short(tmp_path):
    data = _encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)), "PNG")
    (tmp_path / "short.png").write_bytes(data[: len(data) // 2])
    assert _reason(tmp_path / "short.png") == "truncated"


def test_corrupt_pixel_data_is_undecodable_or_truncated(tmp_path):
    data = bytearray(_encode(_marked((200, 200)), "PNG"))
    data[60:120] = b"\x00" * 60  # clobber the compressed stream, keep the length
    (tmp_path / "corrupt.png").write_bytes(bytes(data))
    assert _reason(tmp_path / "corrupt.png") in {"undecodable", "truncated"}


def _png_claiming(width, height):
    """A tiny real PNG whose header claims another size (a decompression bomb's trick)."""
    data = bytearray(_encode(Image.new("RGB", (8, 8)), "PNG"))
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    return bytes(data)


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_claiming(50_000, 50_000))
    assert _reason(tmp_path / "bomb.png") == "decompression_bomb"
    (tmp_path / "big.png").write_bytes(_png_claiming(5_000, 5_000))
    assert _reason(tmp_path / "big.png", max_pixels=1_000_000) == "decompression_bomb"


def test_symlink_leaving_the_root(tmp_path):
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(_encode(_marked(), "JPEG"))
    root = tmp_path / "data" / "Ruby"
    root.mkdir(parents=True)
    (root / "link.jpg").symlink_to(outside)
    assert _reason(root / "link.jpg", root=tmp_path / "data") == "symlink_outside_root"
    # The same link is fine when nothing confines it (e.g. a manifest naming it).
    assert images.load_image_file(root / "link.jpg").width == 60


def test_broken_symlink_and_tiny_picture(tmp_path):
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    assert _reason(tmp_path / "dangling.jpg") == "unreadable"
    (tmp_path / "tiny.png").write_bytes(_encode(Image.new("RGB", (4, 4)), "PNG"))
    assert _reason(tmp_path / "tiny.png") == "too_small"


# --- unusual but valid, decoded correctly ---------------------------------------------

def test_plain_rgb_jpeg_keeps_its_bytes(tmp_path):
    data = _encode(_marked(), "JPEG", quality=90)
    (tmp_path / "plain.jpg").write_bytes(data)
    loaded = images.load_image_file(tmp_path / "plain.jpg")
    assert loaded.data == data and loaded.notes == () and (loaded.width, loaded.height) == (60, 40)
    assert len(loaded.sha256) == 64 and len(loaded.phash) == 16


def test_png_named_jpg_uppercase(tmp_path):
    (tmp_path / "STONE.JPG").write_bytes(_encode(_marked(), "PNG"))
    loaded = images.load_image_file(tmp_path / "STONE.JPG")
    assert loaded.source_format == "png"
    assert "extension_mismatch:.jpg_is_png" in loaded.notes
    assert tuple(_decoded(loaded)[2, 2]) == (255, 0, 0)


def test_rgba_transparency_becomes_white(tmp_path):
    pixels = np.zeros((40, 40, 4), np.uint8)
    pixels[10:30, 10:30] = (0, 0, 200, 255)  # an opaque blue stone on a transparent ground
    (tmp_path / "cutout.png").write_bytes(_encode(Image.fromarray(pixels, "RGBA"), "PNG"))
    loaded = images.load_image_file(tmp_path / "cutout.png")
    decoded = _decoded(loaded)
    assert "alpha_flattened_on_white" in loaded.notes
    assert (decoded[2, 2] > 245).all()
    assert decoded[20, 20, 2] > 180 and decoded[20, 20, 0] < 40


def test_greyscale_palette_and_cmyk(tmp_path):
    grey = Image.fromarray(np.full((30, 30), 77, np.uint8), "L")
    palette = _marked().convert("P", palette=Image.ADAPTIVE, colors=8)
    cmyk = Image.new("CMYK", (30, 30), (0, 255, 255, 0))  # pure red in CMYK
    (tmp_path / "grey.png").write_bytes(_encode(grey, "PNG"))
    (tmp_path / "palette.png").write_bytes(_encode(palette, "PNG"))
    (tmp_path / "cmyk.jpg").write_bytes(_encode(cmyk, "JPEG", quality=95))
    assert abs(_decoded(images.load_image_file(tmp_path / "grey.png"))[5, 5] - 77).max() <= 2
    assert tuple(_decoded(images.load_image_file(tmp_path / "palette.png"))[2, 2]) == pytest.approx((255, 0, 0), abs=8)
    cmyk_loaded = images.load_image_file(tmp_path / "cmyk.jpg")
    assert "converted_from_CMYK" in cmyk_loaded.notes
    red = _decoded(cmyk_loaded)[15, 15]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.zeros((20, 20), np.uint16)
    values[:, :10], values[:, 10:] = 65535, 32768
    (tmp_path / "deep.png").write_bytes(_encode(Image.fromarray(values, "I;16"), "PNG"))
    decoded = _decoded(images.load_image_file(tmp_path / "deep.png"))
    assert abs(decoded[5, 2, 0] - 255) <= 2 and abs(decoded[5, 15, 0] - 128) <= 3


def test_webp(tmp_path):
    (tmp_path / "stone.webp").write_bytes(_encode(_marked(), "WEBP", lossless=True))
    loaded = images.load_image_file(tmp_path / "stone.webp")
    assert loaded.source_format == "webp" and loaded.encoding == "jpeg"
    assert _decoded(loaded)[3, 3, 0] > 200


def test_exif_rotation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    (tmp_path / "phone.jpg").write_bytes(_encode(_marked((60, 40)), "JPEG", quality=95, exif=exif.tobytes()))
    loaded = images.load_image_file(tmp_path / "phone.jpg")
    assert "exif_rotated" in loaded.notes
    assert (loaded.width, loaded.height) == (40, 60)
    decoded = _decoded(loaded)
    assert decoded[3, 36, 0] > 200 and decoded[3, 3, 0] < 180  # the red corner moved to the top right


def test_unicode_and_spaces_in_names(tmp_path):
    folder = tmp_path / "Sapphire Blue"
    folder.mkdir()
    path = folder / "saphir bleu – Ceylan 💎.jpg"
    path.write_bytes(_encode(_marked(), "JPEG"))
    assert images.load_image_file(path).width == 60
    assert images.list_image_files(tmp_path).files == [path]


def test_large_pictures_are_downscaled_keeping_aspect(tmp_path):
    (tmp_path / "wide.jpg").write_bytes(_encode(_marked((3000, 1000)), "JPEG"))
    loaded = images.load_image_file(tmp_path / "wide.jpg", max_side=1024)
    assert loaded.width == 1024 and abs(loaded.height - 341) <= 1
    assert "downscaled_from_3000x1000" in loaded.notes


def test_perceptual_hash_survives_recompression_but_not_a_new_picture():
    rng = np.random.default_rng(0)
    picture = Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).resize((128, 128), Image.BICUBIC)
    other = Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).resize((128, 128), Image.BICUBIC)
    high = images.decode_image_bytes(_encode(picture, "JPEG", quality=95)).phash
    low = images.decode_image_bytes(_encode(picture, "JPEG", quality=40)).phash
    different = images.decode_image_bytes(_encode(other, "JPEG", quality=95)).phash
    distance = lambda a, b: bin(int(a, 16) ^ int(b, 16)).count("1")  # noqa: E731
    assert distance(high, low) <= 4 < 16 < distance(high, different)


# --- listing ----------------------------------------------------------------------------

def test_listing_sorts_files_into_images_hidden_and_other(tmp_path):
    ruby = tmp_path / "Ruby"
    (ruby / ".thumbs").mkdir(parents=True)
    for name in ("b.jpg", "a.PNG", ".DS_Store", "Thumbs.db", "readme.txt"):
        (ruby / name).write_bytes(b"x")
    (ruby / ".thumbs" / "c.jpg").write_bytes(b"x")
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    outside.mkdir()
    (tmp_path / "Linked").symlink_to(outside, target_is_directory=True)
    listing = images.list_image_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in listing.files] == ["Linked", "Ruby/a.PNG", "Ruby/b.jpg"]
    assert sorted(p.name for p in listing.ignored_hidden) == [".DS_Store", "Thumbs.db", "c.jpg"]
    assert [p.name for p in listing.ignored_other] == ["readme.txt"]
    assert _reason(tmp_path / "Linked", root=tmp_path) == "symlink_outside_root"
