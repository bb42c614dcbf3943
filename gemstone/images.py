"""Loading one image file safely: decode anything valid, reject the rest with a reason.

The format is sniffed from the content, never trusted from the extension (real
collections have PNGs named `.jpg`). Whatever comes in, what goes out is an
8-bit RGB picture, encoded as JPEG or PNG for `tf.io.decode_image`:

  * EXIF orientation is applied, so a phone photo stands the right way up;
  * transparency is flattened onto WHITE, like a stone on a studio light box:
    gem cut-outs are usually transparent PNGs, and white keeps their colour true;
  * CMYK, palette, greyscale and 16-bit pictures become 8-bit RGB (16-bit values
    are scaled, not clipped); an animation keeps its first frame;
  * pictures larger than `max_side` are downscaled (the model sees a few hundred
    pixels at most; this keeps examples small).

A single-frame baseline RGB JPEG or 8-bit RGB PNG that needs none of this keeps
its original bytes; anything else is re-encoded as JPEG quality 95.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import stat
import threading
from pathlib import Path
from typing import List, Optional, Tuple

import imagehash
import numpy as np
from PIL import Image, UnidentifiedImageError

from gemstone import image_stats

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
HIDDEN_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", "Icon\r"})
DEFAULT_MAX_PIXELS = 40_000_000  # a 40-megapixel photo is plausible; more is a decompression bomb
DEFAULT_MAX_SIDE = 1024
_JPEG_QUALITY = 95
_FORMAT_OF_EXTENSION = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp", ".bmp": "bmp",
                        ".gif": "gif", ".tif": "tiff", ".tiff": "tiff"}
# EXIF orientation -> the transposition that stands the picture upright. Done by
# hand rather than ImageOps.exif_transpose, which also rewrites the EXIF block
# and so fails on files whose other tags are malformed.
_ORIENTATION_FIX = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_PIL_LIMIT_LOCK = threading.Lock()


class ImageRejected(Exception):
    """A file that cannot be used. `reason` is a short code for reports, `detail` says more."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class LoadedImage:
    data: bytes  # encoded JPEG or PNG, 8-bit RGB
    encoding: str  # "jpeg" or "png"
    source_format: str  # what the content really was, e.g. "png" for a PNG named .jpg
    width: int  # of `data`: after orientation and downscaling
    height: int
    sha256: str  # of the original file bytes
    phash: str  # 64-bit perceptual hash of the normalised picture, 16 hex digits
    notes: Tuple[str, ...] = ()
    stats: Optional[image_stats.ImageStats] = None  # brightness, sharpness, colour, ...


def is_hidden(name: str) -> bool:
    return name in HIDDEN_NAMES or name.startswith(".")


def _open(raw: bytes) -> Image.Image:
    """Parses the header only. PIL's own pixel limit is lifted meanwhile so that our
    `max_pixels` governs; the lock keeps threads from restoring each other's value."""
    with _PIL_LIMIT_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(io.BytesIO(raw))
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _to_rgb(image: Image.Image, notes: List[str]) -> Image.Image:
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode.startswith("I"):  # 16/32-bit greyscale: scale 0..65535 to 0..255, don't clip at 255
        values = np.asarray(image).astype(np.int64)
        if mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values.clip(0, 65535) >> 8
        image = Image.fromarray(values.clip(0, 255).astype(np.uint8), "L")
    elif mode == "F":  # float: 0..1 when normalised, else assume 0..255
        values = np.asarray(image, dtype=np.float64)
        values = values * 255 if values.max(initial=0) <= 1.0 else values
        image = Image.fromarray(values.clip(0, 255).round().astype(np.uint8), "L")
    if mode not in ("RGB", "RGBA"):
        notes.append(f"converted_from_{mode}")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        notes.append("alpha_flattened_on_white")
    return image.convert("RGB")


def _failure_reason(error: Exception) -> str:
    """`truncated` when the decoder ran out of data (a cut-off download), else `undecodable`."""
    text = str(error).lower()
    cut_short = any(mark in text for mark in ("truncated", "broken data stream", "broken png"))
    return "truncated" if isinstance(error, (OSError, SyntaxError)) and cut_short else "undecodable"


def decode_image_bytes(raw: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int = DEFAULT_MAX_SIDE,
                       min_side: int = 8, name: str = "", measure: bool = True) -> LoadedImage:
    """Decodes and normalises one encoded picture; raises `ImageRejected` with the reason.

    `name` (a file name, optional) only serves to note an extension that lies about the content.
    `measure=False` skips the perceptual hash and the image statistics (a third of the time on a
    typical photo): ingestion needs them, classifying a photo does not.
    """
    if not raw:
        raise ImageRejected("empty_file", "the file has no bytes")
    try:
        image = _open(raw)
    except UnidentifiedImageError:
        raise ImageRejected("not_an_image", "the content is not a known image format") from None
    except Exception as e:  # noqa: BLE001 - any parser failure is a property of the file
        raise ImageRejected(_failure_reason(e), f"{type(e).__name__}: {e}") from None
    # MPO is how PIL names a camera JPEG carrying extra pictures; its bytes are a plain JPEG.
    source_format = {"mpo": "jpeg"}.get((image.format or "").lower(), (image.format or "unknown").lower())
    width, height = image.size
    # Both checks use the header, before a single pixel is decoded.
    if width * height > max_pixels:
        raise ImageRejected("decompression_bomb", f"{width}x{height} pixels exceeds the limit of {max_pixels:,}")
    if min(width, height) < min_side:
        raise ImageRejected("too_small", f"{width}x{height} is under {min_side} pixels on a side")

    notes: List[str] = []
    try:
        image.load()  # first frame only
        if getattr(image, "n_frames", 1) > 1 and source_format != "jpeg":  # an MPO's extra pictures don't count
            notes.append(f"first_frame_of_{image.n_frames}")
        orientation = _orientation(image)
        if orientation in _ORIENTATION_FIX:
            image = image.transpose(_ORIENTATION_FIX[orientation])
            notes.append("exif_rotated")
        rgb = _to_rgb(image, notes)
        if max(rgb.size) > max_side:
            notes.append(f"downscaled_from_{rgb.width}x{rgb.height}")
            rgb.thumbnail((max_side, max_side), Image.LANCZOS, reducing_gap=3.0)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:  # e.g. an oversized GIF frame
        raise ImageRejected("decompression_bomb", str(e)) from None
    except Exception as e:  # noqa: BLE001
        raise ImageRejected(_failure_reason(e), f"{type(e).__name__}: {e}") from None
    if min(rgb.size) < min_side:  # a sliver that downscaling thinned below the minimum
        raise ImageRejected("too_small", f"{width}x{height} becomes {rgb.width}x{rgb.height} at {max_side} px")

    # Original bytes are kept only when TensorFlow would decode them to exactly these pixels.
    baseline_jpeg = source_format == "jpeg" and not image.info.get("progressive")
    plain_png = source_format == "png" and raw[24:25] == b"\x08"  # IHDR bit depth
    if not notes and image.mode == "RGB" and (baseline_jpeg or plain_png):
        data, encoding = raw, source_format
    else:
        buffer = io.BytesIO()
        rgb.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
        data, encoding = buffer.getvalue(), "jpeg"
        notes.append(f"reencoded_from_{source_format}")
    if orientation not in _ORIENTATION_FIX and orientation != 1:
        notes.append("bad_exif_orientation_ignored")
    claimed = _FORMAT_OF_EXTENSION.get(os.path.splitext(name)[1].lower())
    if claimed and claimed != source_format:
        notes.append(f"extension_mismatch:{os.path.splitext(name)[1].lower()}_is_{source_format}")
    return LoadedImage(
        data=data, encoding=encoding, source_format=source_format, width=rgb.width, height=rgb.height,
        sha256=hashlib.sha256(raw).hexdigest(), phash=str(imagehash.phash(rgb)) if measure else "",
        notes=tuple(notes), stats=image_stats.measure(rgb) if measure else None,
    )


def _orientation(image: Image.Image):
    """The EXIF orientation (1 when absent); None when the EXIF block is malformed,
    which must not cost the picture."""
    try:
        return image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001
        return None


def load_image_file(path, root=None, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int = DEFAULT_MAX_SIDE,
                    min_side: int = 8, measure: bool = True) -> LoadedImage:
    """Reads and decodes one file. With `root`, a path whose symlinks lead outside it is rejected."""
    path = Path(path)
    try:
        if root is not None:
            target = path.resolve()
            if not target.is_relative_to(Path(root).resolve()):
                raise ImageRejected("symlink_outside_root", f"leads to {target}, outside {root}")
        # Only regular files: a directory is no picture and reading a FIFO would hang.
        if not stat.S_ISREG(path.stat().st_mode):
            raise ImageRejected("unreadable", "not a regular file")
        raw = path.read_bytes()
    except (OSError, RuntimeError) as e:  # broken link, permissions, symlink loop (RuntimeError on 3.10)
        raise ImageRejected("unreadable", f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}") from None
    return decode_image_bytes(raw, max_pixels=max_pixels, max_side=max_side, min_side=min_side, name=path.name,
                              measure=measure)


@dataclasses.dataclass
class ImageListing:
    files: List[Path]  # candidate images (by extension, any case), plus symlinked folders (see below)
    ignored_hidden: List[Path]  # .DS_Store, Thumbs.db, dot files and anything in dot folders
    ignored_other: List[Path]  # visible files that are not images by extension


def list_image_files(root) -> ImageListing:
    """Every file under `root`, sorted into images / hidden / other, each list sorted.

    Symlinks are not followed but listed, so the loader can reject those that
    leave the root: a symlinked folder goes into `files` too, to be reported
    rather than silently lost.
    """
    root = Path(root)
    listing = ImageListing([], [], [])
    for folder, dirs, names in os.walk(root, followlinks=False):
        folder_path = Path(folder)
        for name in [d for d in dirs if is_hidden(d)]:
            dirs.remove(name)  # not descended into by the outer walk; its files are counted as hidden
            if (folder_path / name).is_symlink():  # walking it would follow the link
                listing.ignored_hidden.append(folder_path / name)
                continue
            for inner, _, inner_names in os.walk(folder_path / name, followlinks=False):
                listing.ignored_hidden.extend(Path(inner) / n for n in inner_names)
        listing.files.extend(folder_path / d for d in dirs if (folder_path / d).is_symlink())
        for name in names:
            path = folder_path / name
            if is_hidden(name):
                listing.ignored_hidden.append(path)
            elif path.suffix.lower() in IMAGE_EXTENSIONS:
                listing.files.append(path)
            else:
                listing.ignored_other.append(path)
    for found in (listing.files, listing.ignored_hidden, listing.ignored_other):
        found.sort()
    return listing
