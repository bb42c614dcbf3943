"""Loading one image file safely: decode anything valid, reject the rest with a reason.

The format is sniffed from the content, never trusted from the extension (real
collections have PNGs named `.jpg`). Whatever comes in, what goes out is an
8-bit RGB picture, encoded as JPEG or PNG for TensorFlow's decoder:

  * EXIF orientation is applied, so a phone photo stands the right way up;
  * transparency is flattened onto WHITE, as a stone on a light box: gem
    cut-outs are usually transparent PNGs, and white keeps their colour true;
  * CMYK, palette, greyscale and 16-bit pictures are converted to 8-bit RGB
    (16-bit values are scaled, not clipped);
  * pictures larger than `max_side` are downscaled (the model sees a few
    hundred pixels at most; this keeps examples small).

A plain RGB JPEG or 8-bit RGB PNG that needs none of this keeps its original
bytes; anything else is re-encoded as JPEG quality 95.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import warnings
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
_REENCODE_QUALITY = 95
_SAME_FORMAT = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp", ".bmp": "bmp",
                ".gif": "gif", ".tif": "tiff", ".tiff": "tiff"}


# EXIF orientation -> the transposition that stands the picture upright.
_ORIENTATION_FIX = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


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
    source_format: str  # what the file really was, e.g. "png" for a PNG named .jpg
    width: int
    height: int
    sha256: str  # of the original file bytes
    phash: str  # 64-bit perceptual hash, 16 hex digits
    notes: Tuple[str, ...] = ()
    stats: Optional[image_stats.ImageStats] = None  # brightness, sharpness, colour, ...


def is_hidden(name: str) -> bool:
    return name in HIDDEN_NAMES or name.startswith(".")


def _to_rgb(image: Image.Image, notes: List[str]) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale 0..65535 to 0..255 rather than clip at 255.
        values = np.asarray(image, dtype=np.uint32)
        shift = 8 if values.max(initial=0) > 255 or mode.startswith("I;16") else 0
        image = Image.fromarray((values >> shift).clip(0, 255).astype(np.uint8), mode="L")
    elif mode == "F":
        image = Image.fromarray(np.asarray(image).clip(0, 255).astype(np.uint8), mode="L")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
        notes.append("alpha_flattened_on_white")
    else:
        notes.append(f"converted_from_{mode}")
    return image.convert("RGB")


def _encode(image: Image.Image, encoding: str) -> bytes:
    buffer = io.BytesIO()
    if encoding == "jpeg":
        image.save(buffer, format="JPEG", quality=_REENCODE_QUALITY)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def decode_image_bytes(raw: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int = DEFAULT_MAX_SIDE,
                       min_side: int = 8) -> LoadedImage:
    """Decodes and normalises one encoded picture; raises `ImageRejected` with the reason."""
    if not raw:
        raise ImageRejected("empty_file", "the file has no bytes")
    sha256 = hashlib.sha256(raw).hexdigest()
    try:
        # Our own pixel limit governs, checked from the header before any pixel is decoded.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
    except UnidentifiedImageError:
        raise ImageRejected("not_an_image", "the content is not a known image format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageRejected("decompression_bomb", str(e)) from None
    except Exception as e:  # noqa: BLE001 - any parser failure is a property of the file
        raise ImageRejected("undecodable", f"{type(e).__name__}: {e}") from None
    source_format = (image.format or "unknown").lower()
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected("decompression_bomb", f"{width}x{height} pixels exceeds the limit of {max_pixels:,}")
    if min(width, height) < min_side:
        raise ImageRejected("too_small", f"{width}x{height} is under {min_side} pixels on a side")

    notes: List[str] = []
    try:
        image.load()
        orientation = image.getexif().get(0x0112, 1)
        # Some files carry a malformed orientation tag (a string, 0, 9): ignore it, keep the picture.
        if isinstance(orientation, int) and 2 <= orientation <= 8:
            # Transposed by hand: ImageOps.exif_transpose also rewrites the EXIF
            # block and fails on files with an unrelated malformed tag.
            image = image.transpose(_ORIENTATION_FIX[orientation])
            notes.append("exif_rotated")
        elif orientation != 1:
            notes.append("bad_exif_orientation_ignored")
        rgb = _to_rgb(image, notes)
    except (OSError, SyntaxError) as e:
        text = str(e)
        cut_short = any(mark in text.lower() for mark in ("truncated", "broken data stream", "broken png"))
        reason = "truncated" if cut_short else "undecodable"
        raise ImageRejected(reason, f"{type(e).__name__}: {text}") from None
    except Exception as e:  # noqa: BLE001
        raise ImageRejected("undecodable", f"{type(e).__name__}: {e}") from None

    if max(rgb.size) > max_side:
        notes.append(f"downscaled_from_{rgb.width}x{rgb.height}")
        rgb.thumbnail((max_side, max_side), Image.LANCZOS, reducing_gap=3.0)
    plain = not notes and image.mode == "RGB" and source_format in ("jpeg", "png")
    if plain:
        data, encoding = raw, source_format
    else:
        data, encoding = _encode(rgb, "jpeg"), "jpeg"
    return LoadedImage(
        data=data, encoding=encoding, source_format=source_format, width=rgb.width, height=rgb.height,
        sha256=sha256, phash=str(imagehash.phash(rgb)), notes=tuple(notes), stats=image_stats.measure(rgb),
    )


def _escapes(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return False
    except ValueError:
        return True


def load_image_file(path, root=None, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int = DEFAULT_MAX_SIDE,
                    min_side: int = 8) -> LoadedImage:
    """Reads and decodes one file. `root`: a symlink resolving outside it is rejected."""
    path = Path(path)
    if root is not None and _escapes(path, Path(root)):
        raise ImageRejected("symlink_outside_root", f"links to {path.resolve()}, outside {root}")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ImageRejected("unreadable", f"{type(e).__name__}: {e.strerror or e}") from None
    loaded = decode_image_bytes(raw, max_pixels=max_pixels, max_side=max_side, min_side=min_side)
    claimed = _SAME_FORMAT.get(path.suffix.lower())
    if claimed and claimed != loaded.source_format:
        loaded = dataclasses.replace(
            loaded, notes=loaded.notes + (f"extension_mismatch:{path.suffix.lower()}_is_{loaded.source_format}",))
    return loaded


@dataclasses.dataclass
class ImageListing:
    files: List[Path]  # candidate images (by extension, any case)
    ignored_hidden: List[Path]  # .DS_Store, Thumbs.db, dot files and anything in dot folders
    ignored_other: List[Path]  # visible files that are not images by extension


def list_image_files(root) -> ImageListing:
    """Every file under `root`, sorted, sorted into images / hidden / other.

    Symlinked files are listed (the loader rejects those that leave the root);
    symlinked folders are not followed.
    """
    root = Path(root)
    listing = ImageListing([], [], [])
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs.sort()
        folder_path = Path(folder)
        hidden_dirs = [d for d in dirs if is_hidden(d)]
        for name in hidden_dirs:
            dirs.remove(name)
            listing.ignored_hidden.extend(p for p in sorted((folder_path / name).rglob("*")) if not p.is_dir())
        # A symlinked folder is not walked but listed, so it is reported, not lost.
        listing.files.extend(folder_path / d for d in dirs if (folder_path / d).is_symlink())
        for name in sorted(names):
            path = folder_path / name
            if is_hidden(name):
                listing.ignored_hidden.append(path)
            elif path.suffix.lower() in IMAGE_EXTENSIONS:
                listing.files.append(path)
            else:
                listing.ignored_other.append(path)
    return listing
