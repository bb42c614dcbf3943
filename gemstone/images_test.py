"""Hostile and unusual files, all generated here in tmp_path (nothing committed)."""
import hashlib
import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from gemstone import images
from gemstone.images import ImageRejected
from tests.hostile_files import png_claiming


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
    """The stored bytes decoded again, as (height, width, 3) ints; also checks the stated size."""
    picture = Image.open(io.BytesIO(loaded.data))
    assert picture.format.lower() == loaded.encoding and picture.size == (loaded.width, loaded.height)
    return np.asarray(picture.convert("RGB"), dtype=int)


def _reason(path, **kwargs):
    with pytest.raises(ImageRejected) as info:
        images.load_image_file(path, **kwargs)
    return info.value.reason


def _close(pixel, colour, tolerance=12):
    return all(abs(int(a) - b) <= tolerance for a, b in zip(pixel, colour))


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


def test_unsupported_variant_of_a_known_format_is_undecodable(tmp_path):
    data = bytearray(_encode(_marked(), "BMP"))
    data[28:30] = struct.pack("<H", 7)  # 7 bits per pixel: a BMP, but not one anybody can decode
    (tmp_path / "odd.bmp").write_bytes(bytes(data))
    assert _reason(tmp_path / "odd.bmp") == "undecodable"


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    (tmp_path / "bomb.png").write_bytes(png_claiming(10_000, 10_000))
    with pytest.raises(ImageRejected) as info:
        images.load_image_file(tmp_path / "bomb.png")
    assert info.value.reason == "decompression_bomb" and "10000x10000" in info.value.detail
    (tmp_path / "big.png").write_bytes(png_claiming(5_000, 5_000))
    assert _reason(tmp_path / "big.png", max_pixels=1_000_000) == "decompression_bomb"


def test_our_pixel_limit_governs_not_pillows(tmp_path):
    # 225 Mpx is past Pillow's own hard limit; a caller allowing it gets past the header
    # (and then finds the pixel data missing), and Pillow's global is left as it was.
    before = Image.MAX_IMAGE_PIXELS
    (tmp_path / "huge.png").write_bytes(png_claiming(15_000, 15_000))
    assert _reason(tmp_path / "huge.png", max_pixels=300_000_000) == "truncated"
    assert Image.MAX_IMAGE_PIXELS == before


def test_symlinks_leaving_the_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "stone.jpg").write_bytes(_encode(_marked(), "JPEG"))
    root = tmp_path / "data"
    (root / "Ruby").mkdir(parents=True)
    (root / "Ruby" / "link.jpg").symlink_to(outside / "stone.jpg")
    (root / "Linked").symlink_to(outside, target_is_directory=True)  # a symlinked folder on the way
    (root / "Ruby" / "inside.jpg").symlink_to(root / "Linked" / "stone.jpg")  # a link to a link that escapes
    for path in ("Ruby/link.jpg", "Linked/stone.jpg", "Ruby/inside.jpg", "Ruby/../../outside/stone.jpg"):
        assert _reason(root / path, root=root) == "symlink_outside_root", path
    # A link that stays inside is fine, and so is any link when nothing confines it.
    (root / "Ruby" / "real.jpg").write_bytes(_encode(_marked(), "JPEG"))
    (root / "Ruby" / "alias.jpg").symlink_to(root / "Ruby" / "real.jpg")
    assert images.load_image_file(root / "Ruby" / "alias.jpg", root=root).width == 60
    assert images.load_image_file(root / "Ruby" / "link.jpg").width == 60


def test_unreadable_paths(tmp_path):
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (tmp_path / "loop-a.jpg").symlink_to(tmp_path / "loop-b.jpg")
    (tmp_path / "loop-b.jpg").symlink_to(tmp_path / "loop-a.jpg")
    (tmp_path / "folder.jpg").mkdir()
    os.mkfifo(tmp_path / "pipe.jpg")  # reading it would block forever
    for name in ("dangling.jpg", "loop-a.jpg", "folder.jpg", "pipe.jpg", "missing.jpg"):
        assert _reason(tmp_path / name, root=tmp_path) == "unreadable", name
        assert _reason(tmp_path / name) == "unreadable", name


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_permission_denied_is_unreadable(tmp_path):
    path = tmp_path / "locked.jpg"
    path.write_bytes(_encode(_marked(), "JPEG"))
    path.chmod(0)
    try:
        assert _reason(path) == "unreadable"
    finally:
        path.chmod(0o644)


def test_too_small(tmp_path):
    (tmp_path / "tiny.png").write_bytes(_encode(Image.new("RGB", (4, 4)), "PNG"))
    assert _reason(tmp_path / "tiny.png") == "too_small"
    assert images.load_image_file(tmp_path / "tiny.png", min_side=4).width == 4
    # A sliver downscaled to 1024 px would be 3 px high: too small for the model.
    (tmp_path / "sliver.png").write_bytes(_encode(Image.new("RGB", (3000, 10)), "PNG"))
    assert _reason(tmp_path / "sliver.png") == "too_small"


# --- unusual but valid, decoded correctly ---------------------------------------------

def test_plain_rgb_jpeg_and_png_keep_their_bytes(tmp_path):
    for name, fmt, encoding in (("plain.jpg", "JPEG", "jpeg"), ("plain.png", "PNG", "png")):
        data = _encode(_marked(), fmt)
        (tmp_path / name).write_bytes(data)
        loaded = images.load_image_file(tmp_path / name)
        assert loaded.data == data and loaded.encoding == encoding and loaded.notes == ()
        assert (loaded.width, loaded.height) == (60, 40) and loaded.sha256 == hashlib.sha256(data).hexdigest()
        assert len(loaded.phash) == 16 and int(loaded.phash, 16) >= 0


def test_progressive_jpeg_is_reencoded_as_baseline(tmp_path):
    data = _encode(_marked(), "JPEG", progressive=True)
    loaded = images.decode_image_bytes(data)
    assert loaded.data != data and loaded.encoding == "jpeg" and "reencoded_from_jpeg" in loaded.notes
    assert not Image.open(io.BytesIO(loaded.data)).info.get("progressive")
    assert loaded.sha256 == hashlib.sha256(data).hexdigest()  # of the original, not of what is stored
    assert _close(_decoded(loaded)[3, 3], (255, 0, 0))


def _png_16bit_rgb(width, height, value):
    """A 48-bit RGB PNG, written by hand: Pillow opens these as plain 8-bit "RGB"."""
    rows = b"".join(b"\x00" + struct.pack(f">{3 * width}H", *[value] * (3 * width)) for _ in range(height))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_sixteen_bit_rgb_png_is_not_kept_as_is():
    data = _png_16bit_rgb(20, 20, 32768)
    loaded = images.decode_image_bytes(data)
    assert loaded.data != data and loaded.encoding == "jpeg" and "reencoded_from_png" in loaded.notes
    assert _close(_decoded(loaded)[5, 5], (128, 128, 128), 2)


def test_png_named_jpg_uppercase(tmp_path):
    (tmp_path / "STONE.JPG").write_bytes(_encode(_marked(), "PNG"))
    loaded = images.load_image_file(tmp_path / "STONE.JPG")
    assert loaded.source_format == "png" and loaded.encoding == "png"
    assert "extension_mismatch:.jpg_is_png" in loaded.notes
    assert tuple(_decoded(loaded)[2, 2]) == (255, 0, 0) and tuple(_decoded(loaded)[30, 30]) == (128, 128, 128)


def test_equivalent_extensions_are_no_mismatch():
    jpeg, tiff = _encode(_marked(), "JPEG"), _encode(_marked(), "TIFF")
    assert images.decode_image_bytes(jpeg, name="a.JPEG").notes == ()
    assert not any(n.startswith("extension_mismatch") for n in images.decode_image_bytes(tiff, name="a.tif").notes)
    assert "extension_mismatch:.png_is_tiff" in images.decode_image_bytes(tiff, name="a.png").notes


def test_rgba_transparency_becomes_white(tmp_path):
    pixels = np.zeros((40, 40, 4), np.uint8)
    pixels[10:30, 10:30] = (0, 0, 200, 255)  # an opaque blue stone on a transparent (black) ground
    (tmp_path / "cutout.png").write_bytes(_encode(Image.fromarray(pixels, "RGBA"), "PNG"))
    loaded = images.load_image_file(tmp_path / "cutout.png")
    decoded = _decoded(loaded)
    assert "alpha_flattened_on_white" in loaded.notes and loaded.encoding == "jpeg"
    assert _close(decoded[2, 2], (255, 255, 255), 6)
    assert _close(decoded[20, 20], (0, 0, 200))


def test_other_kinds_of_transparency_become_white():
    stone = np.full((40, 40, 3), 128, np.uint8)
    stone[10:30, 10:30] = (0, 0, 255)
    keyed = images.decode_image_bytes(_encode(Image.fromarray(stone), "PNG", transparency=(128, 128, 128)))
    palette = Image.fromarray(stone).convert("P", palette=Image.ADAPTIVE, colors=4)
    gif = images.decode_image_bytes(_encode(palette, "GIF", transparency=palette.getpixel((0, 0))))
    for loaded in (keyed, gif):
        assert "alpha_flattened_on_white" in loaded.notes
        assert _close(_decoded(loaded)[2, 2], (255, 255, 255)) and _close(_decoded(loaded)[20, 20], (0, 0, 255))
    assert "converted_from_P" in gif.notes and gif.source_format == "gif"


def test_greyscale_palette_and_cmyk(tmp_path):
    grey = Image.fromarray(np.full((30, 30), 77, np.uint8), "L")
    palette = _marked().convert("P", palette=Image.ADAPTIVE, colors=8)
    cmyk = Image.new("CMYK", (30, 30), (0, 255, 255, 0))  # pure red in CMYK
    (tmp_path / "grey.png").write_bytes(_encode(grey, "PNG"))
    (tmp_path / "palette.png").write_bytes(_encode(palette, "PNG"))
    (tmp_path / "cmyk.jpg").write_bytes(_encode(cmyk, "JPEG", quality=95))
    grey_loaded = images.load_image_file(tmp_path / "grey.png")
    assert "converted_from_L" in grey_loaded.notes and _close(_decoded(grey_loaded)[5, 5], (77, 77, 77), 2)
    palette_loaded = images.load_image_file(tmp_path / "palette.png")
    assert "converted_from_P" in palette_loaded.notes
    assert _close(_decoded(palette_loaded)[2, 2], (255, 0, 0), 8)
    assert _close(_decoded(palette_loaded)[30, 50], (128, 128, 128), 8)
    cmyk_loaded = images.load_image_file(tmp_path / "cmyk.jpg")
    assert "converted_from_CMYK" in cmyk_loaded.notes and cmyk_loaded.source_format == "jpeg"
    assert _close(_decoded(cmyk_loaded)[15, 15], (255, 0, 0), 40)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_sixteen_bit_is_scaled_not_clipped(fmt):
    values = np.zeros((20, 20), np.uint16)
    values[:, :10], values[:, 10:] = 65535, 32768
    loaded = images.decode_image_bytes(_encode(Image.fromarray(values, "I;16"), fmt))
    assert "converted_from_I;16" in loaded.notes
    decoded = _decoded(loaded)
    assert _close(decoded[5, 2], (255, 255, 255), 2) and _close(decoded[5, 15], (128, 128, 128), 3)


def test_webp_bmp_tiff_and_animated_gif():
    for fmt, kwargs in (("WEBP", {"lossless": True}), ("BMP", {}), ("TIFF", {})):
        loaded = images.decode_image_bytes(_encode(_marked(), fmt, **kwargs))
        assert loaded.source_format == fmt.lower() and loaded.encoding == "jpeg"
        assert f"reencoded_from_{fmt.lower()}" in loaded.notes
        assert _close(_decoded(loaded)[3, 3], (255, 0, 0)) and _close(_decoded(loaded)[30, 50], (128, 128, 128))
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    animated = images.decode_image_bytes(_encode(frames[0], "GIF", save_all=True, append_images=frames[1:]))
    assert "first_frame_of_2" in animated.notes and _close(_decoded(animated)[5, 5], (255, 0, 0))


def test_multi_picture_jpeg_counts_as_jpeg():
    data = _encode(_marked(), "MPO", save_all=True, append_images=[_marked()])
    loaded = images.decode_image_bytes(data, name="camera.jpg")
    assert loaded.source_format == "jpeg" and loaded.notes == () and loaded.data == data


def _with_orientation(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(_marked((60, 40)), "JPEG", quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("orientation, size, red_at", [
    (6, (40, 60), (3, 36)),   # rotate 90 CW to view: the red corner goes top right
    (8, (40, 60), (56, 3)),   # rotate 90 CCW: bottom left
    (3, (60, 40), (36, 56)),  # upside down: bottom right
])
def test_exif_rotation_is_applied(tmp_path, orientation, size, red_at):
    (tmp_path / "phone.jpg").write_bytes(_with_orientation(orientation))
    loaded = images.load_image_file(tmp_path / "phone.jpg")
    assert "exif_rotated" in loaded.notes and (loaded.width, loaded.height) == size
    decoded = _decoded(loaded)
    assert _close(decoded[red_at], (255, 0, 0), 20) and _close(decoded[20, 20], (128, 128, 128), 20)
    assert not _close(decoded[3, 3], (255, 0, 0), 60)


def test_malformed_orientation_is_ignored_and_bytes_kept():
    data = _with_orientation(9)
    loaded = images.decode_image_bytes(data)
    assert loaded.notes == ("bad_exif_orientation_ignored",) and loaded.data == data


def test_unicode_and_spaces_in_names(tmp_path):
    folder = tmp_path / "Sapphire Blue"
    folder.mkdir()
    path = folder / "saphir bleu – Ceylan 💎.JPG"
    path.write_bytes(_encode(_marked(), "JPEG"))
    assert images.load_image_file(path, root=tmp_path).width == 60
    assert images.list_image_files(tmp_path).files == [path]


def test_large_pictures_are_downscaled_keeping_aspect(tmp_path):
    (tmp_path / "wide.jpg").write_bytes(_encode(_marked((3000, 1000)), "JPEG"))
    loaded = images.load_image_file(tmp_path / "wide.jpg", max_side=1024)
    assert loaded.width == 1024 and abs(loaded.height - 341) <= 1 and loaded.encoding == "jpeg"
    assert "downscaled_from_3000x1000" in loaded.notes
    decoded = _decoded(loaded)  # the 10 px red corner is now ~3 px
    assert _close(decoded[1, 1], (255, 0, 0), 30) and _close(decoded[10, 10], (128, 128, 128), 10)
    tall = images.decode_image_bytes(_encode(_marked((500, 2000)), "PNG"), max_side=200)
    assert (tall.width, tall.height) == (50, 200)


def test_perceptual_hash_survives_recompression_but_not_a_new_picture():
    rng = np.random.default_rng(0)
    picture = Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).resize((256, 256), Image.BICUBIC)
    other = Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).resize((256, 256), Image.BICUBIC)
    high = images.decode_image_bytes(_encode(picture, "JPEG", quality=95))
    low = images.decode_image_bytes(_encode(picture, "JPEG", quality=50))
    different = images.decode_image_bytes(_encode(other, "JPEG", quality=95))
    assert high.sha256 != low.sha256 and high.phash == low.phash
    assert bin(int(high.phash, 16) ^ int(different.phash, 16)).count("1") > 16


def test_tensorflow_decodes_what_is_stored():
    tf = pytest.importorskip("tensorflow")
    rgba = np.zeros((40, 30, 4), np.uint8)
    for raw in (_encode(_marked(), "JPEG"), _encode(_marked(), "PNG"), _encode(Image.fromarray(rgba, "RGBA"), "PNG"),
                _with_orientation(6), _encode(_marked(), "WEBP")):
        loaded = images.decode_image_bytes(raw)
        tensor = tf.io.decode_image(loaded.data, channels=3, expand_animations=False)
        assert tuple(tensor.shape) == (loaded.height, loaded.width, 3)


# --- listing ----------------------------------------------------------------------------

def test_listing_sorts_files_into_images_hidden_and_other(tmp_path):
    ruby = tmp_path / "Ruby"
    (ruby / ".thumbs" / "deeper").mkdir(parents=True)
    for name in ("b.jpg", "a.PNG", "c.Jpeg", ".DS_Store", "Thumbs.db", "desktop.ini", ".hidden.jpg", "readme.txt"):
        (ruby / name).write_bytes(b"x")
    (ruby / ".thumbs" / "c.jpg").write_bytes(b"x")
    (ruby / ".thumbs" / "deeper" / "d.jpg").write_bytes(b"x")
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    outside.mkdir()
    (outside / "far.jpg").write_bytes(_encode(_marked(), "JPEG"))
    (tmp_path / "Linked").symlink_to(outside, target_is_directory=True)  # listed, not walked
    (ruby / "link.jpg").symlink_to(outside / "far.jpg")  # a symlinked file is listed
    listing = images.list_image_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in listing.files] == [
        "Linked", "Ruby/a.PNG", "Ruby/b.jpg", "Ruby/c.Jpeg", "Ruby/link.jpg"]
    assert sorted(p.name for p in listing.ignored_hidden) == [
        ".DS_Store", ".hidden.jpg", "Thumbs.db", "c.jpg", "d.jpg", "desktop.ini"]
    assert [p.name for p in listing.ignored_other] == ["readme.txt"]
    assert listing == images.list_image_files(str(tmp_path))  # deterministic, str or Path
    # The loader quarantines what the listing let through.
    assert _reason(tmp_path / "Linked", root=tmp_path) == "symlink_outside_root"
    assert _reason(ruby / "link.jpg", root=tmp_path) == "symlink_outside_root"


def test_classifying_a_photo_skips_the_measurements_but_not_the_checks(tmp_path):
    """batch-infer loads with measure=False: same picture for the model, no hash or statistics."""
    path = tmp_path / "stone.png"
    path.write_bytes(_encode(_marked(), "PNG"))
    measured, quick = images.load_image_file(path), images.load_image_file(path, measure=False)
    assert quick.data == measured.data and (quick.width, quick.height) == (measured.width, measured.height)
    assert measured.phash and measured.stats is not None
    assert quick.phash == "" and quick.stats is None
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert _reason(tmp_path / "empty.jpg", measure=False) == "empty_file"
