"""Where a pipeline run reads its settings from: one place, for every runner.

The local runner, the tfx CLI and the Kubeflow compiler all build the pipeline
from a `PipelineConfig`. Its fields come from `GEMSTONE_*` environment
variables (so `make run DATA=... PIPELINE_NAME=...` and the tfx CLI, which runs
the pipeline file in a subprocess, see the same settings) with defaults that
suit the generated demo data.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shlex
from pathlib import Path
from typing import Optional

from gemstone import backbones, contract, paths
from gemstone.schema import SCHEMA_DIR  # the curated schemas: <pipeline name>/schema.pbtxt

REPO_ROOT = paths.REPO_ROOT

DEFAULT_PIPELINE_NAME = "gemstone-demo"
DEFAULT_BACKBONE = contract.DEFAULT_BACKBONE  # efficientnet_lite2
FROM_SCRATCH = ("none", "small_cnn")
EDGE_INT8_KINDS = contract.EDGE_INT8_KINDS  # the int8 TFLite models the Trainer can make
# Side of the square picture each kind of backbone sees by default (GEMSTONE_IMAGE_SIZE overrides).
# (keras.applications backbones, trained end to end: 224, the size their ImageNet weights were made at.)
DEFAULT_IMAGE_SIZE = {contract.EFFICIENTNET_LITE2: 224, contract.INCEPTION_V3: 224, "from_scratch": 64,
                      "keras_applications": 224}
PROVENANCE_KEYS = ("source", "package", "version", "tarball_sha256", "wheel_sha256", "weights_sha256",
                   "imagenet_layers", "quantization")
NO_WEIGHTS = "none"  # GEMSTONE_WEIGHTS=none: a pretrained architecture from random weights (tests, plumbing)
AUTO_MULTIPROCESSING_MIN_CORES = 4
# GEMSTONE_PROFILE: how much training a run can afford. "quick" fine-tunes the top blocks of the pretrained
# network on views cached once (a quarter of an hour for the 88 classes on 2 cores); "thorough" fine-tunes the
# whole network on fresh views (about an hour on 2 cores, minutes with a GPU; modules/whole_network.py).
# Each names the settings it changes; GEMSTONE_* variables set explicitly win over a profile.
PROFILES = {
    "quick": {},
    # On Kubeflow the thorough Trainer asks for a GPU and more of the node (kubeflow_runner.trainer_resources).
    "thorough": {"fine_tune_scope": "whole_network", "fine_tune_epochs": 10,
                 "trainer_accelerator": "NVIDIA_TESLA_T4:1", "trainer_memory": 32.0, "trainer_cpu": 8.0},
}
# What a profile does not set: the quick profile's.
PROFILE_DEFAULTS = {"fine_tune_scope": contract.TRAINER_DEFAULTS["fine_tune_scope"],
                    "fine_tune_epochs": contract.TRAINER_DEFAULTS["fine_tune_epochs"],
                    "trainer_accelerator": "", "trainer_memory": 0.0, "trainer_cpu": 0.0}


def label_domain_size(schema_path: str) -> Optional[int]:
    """Number of varieties in a schema's label domain, if it has one."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = text_format.Parse(Path(schema_path).read_text(), schema_pb2.Schema())
    return next((len(d.value) for d in schema.string_domain if d.name == "label"), None)


def auto_beam_mode() -> str:
    """DirectRunner mode for this machine: worker processes only where there are cores to spare.

    On 2 cores, worker start-up costs more than it brings: ImageExampleGen ran 120 images/s
    in memory and 76 with two worker processes; batch-infer 208 and 63.
    """
    return "multi_processing" if (os.cpu_count() or 1) >= AUTO_MULTIPROCESSING_MIN_CORES else "in_memory"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _optional_int(name: str) -> Optional[int]:
    value = os.environ.get(name, "").strip()
    return int(value) if value else None


def _optional_float(name: str) -> Optional[float]:
    value = os.environ.get(name, "").strip()
    return float(value) if value else None


@dataclasses.dataclass
class PipelineConfig:
    """Everything that varies between pipeline runs.

    Attributes:
      pipeline_name: names the run's folders, its MLMD context and its serving folder.
      data: a folder of class folders (class = folder name) or a manifest
        (.csv or .jsonl with at least `path` and `label` columns).
      home: root of everything a run writes locally (`GEMSTONE_HOME`).
      pipeline_root / serving_dir / metadata_path: default to folders under
        `home`; set them (e.g. to gs:// or s3:// URIs) to run elsewhere.
      schema_path: a curated schema.pbtxt; "" means SchemaGen infers one; None
        (default) picks `schema/<pipeline_name>/schema.pbtxt` when it exists.
      image_size: side in pixels of the square image the model sees (0: DEFAULT_IMAGE_SIZE of the backbone).
      epochs / batch_size: training length (end-to-end models: an upper bound, early stopping ends sooner
        when the eval loss stops improving). With a pretrained backbone, `epochs` trains the head on frozen
        features and `fine_tune_epochs` then the top blocks with it (0: the backbone stays frozen).
      views: pretrained backbones: passes of the training photos through the frozen trunk, the first as
        they are, the others augmented.
      edge_int8: the int8 TFLite model beside float16: dynamic_range (int8 weights, float activations;
        any TFLite CPU) or full_integer (int8 activations too, for integer-only accelerators such as the
        Edge TPU; two calibrated conversions, slower). Kept only when it agrees with the SavedModel.
      min_accuracy: absolute accuracy the Evaluator requires to bless a model.
      max_accuracy_drop: how much worse than the last blessed model is tolerated.
      review_threshold: top-1 confidence under which a prediction is flagged
        `needs_review`.
      min_relative_robustness: robustness gate: the share of the clean accuracy each corruption
        (noise, blur, JPEG, lighting, down-scaling) must keep for the model to be pushed; 0 = off.
      max_flagged_known: open-set gate: the largest share of the known test photos the model may flag as
        not a gemstone or an unfamiliar variety and still be pushed.
      profile: "quick" or "thorough" (GEMSTONE_PROFILE): the settings of PROFILES, below any set explicitly.
      trainer_accelerator / trainer_memory / trainer_cpu: what the Trainer's pod asks for on Kubeflow
        (GEMSTONE_TRAINER_ACCELERATOR "TYPE[:COUNT]", GEMSTONE_TRAINER_MEMORY in GB, GEMSTONE_TRAINER_CPU);
        nothing asked for by the quick profile, a T4 GPU, 32 GB and 8 cores by the thorough one.
      beam_direct_workers: DirectRunner worker processes (0 = one per core).
      beam_running_mode: DirectRunner mode: in_memory, multi_threading, multi_processing, or
        auto (default): multi_processing on machines with more than AUTO_MULTIPROCESSING_MIN_CORES
        cores, in_memory below, where worker start-up costs more than it brings (measured on 2
        cores: ImageExampleGen 120 images/s in memory, 76 with two worker processes).
      beam_args: extra Beam options, e.g. `--runner=DataflowRunner --project=...`.
      setup_file: the project's setup.py (Beam's `--setup_file`), as the machine that runs the
        pipeline sees it: what a remote runner's workers install (it requires TFX and Beam).
      backbone: efficientnet_lite2 (default) or inception_v3 (transfer learning from ImageNet), none (a
        small CNN from scratch; small_cnn is the same), or mobilenet_v2, mobilenet_v3_small,
        efficientnet_b0, resnet50 (Keras' applications, trained end to end).
      weights: "" (efficientnet_lite2, inception_v3: the weights `gemstone backbone fetch` wrote; the others: none),
        "none" (random weights), "imagenet" (Keras downloads them) or a local no-top weights file.
      backbone_provenance: where the weights came from (their provenance.json), recorded with the
        Trainer's settings in ML Metadata and on the model card.
      tune: run the TFX Tuner (a keras-tuner random search) before the Trainer, which then takes the
        best values: for the pretrained backbones, the head's learning rate, epochs, each expert's
        dropout, weight decay and views, on the cached features; for the others, learning rate, image
        size, head width and dropout (modules/tuner.py).
      tuner_trials: how many hyperparameter sets the Tuner tries.
      fail_on_anomalies: stop the run when the data does not match the schema.
      containerised: the pipeline runs in the project's container image (Kubeflow): the backbone
        weights and the curated schema are the image's, not checked on the machine that compiles it.
      num_classes: varieties in the curated schema's label domain (read from it by default); the
        Evaluator computes per-class precision / recall / F1 when it is known.
      schema_sha256: sha256 of the curated schema's content (read from it by default), part of
        ImportSchemaGen's cache key; kept when the schema path is rewritten for a container.
    """

    pipeline_name: str = DEFAULT_PIPELINE_NAME
    profile: str = "quick"
    data: str = ""
    home: str = ""
    pipeline_root: str = ""
    serving_dir: str = ""
    metadata_path: str = ""
    schema_path: Optional[str] = None
    image_size: int = 0
    epochs: int = contract.TRAINER_DEFAULTS["epochs"]
    fine_tune_epochs: Optional[int] = None  # None: the profile's (quick 6, thorough 10); 0: frozen
    fine_tune_scope: Optional[str] = None  # None: the profile's (top_blocks, whole_network)
    trainer_accelerator: Optional[str] = None  # None: the profile's; "TYPE[:COUNT]", e.g. NVIDIA_TESLA_T4:1
    trainer_memory: Optional[float] = None  # GB; None: the profile's (0: Kubeflow's default)
    trainer_cpu: Optional[float] = None  # cores; None: the profile's (0: Kubeflow's default)
    views: int = contract.TRAINER_DEFAULTS["views"]
    edge_int8: str = contract.TRAINER_DEFAULTS["edge_int8"]
    batch_size: int = contract.TRAINER_DEFAULTS["batch_size"]
    min_accuracy: float = 0.5
    max_accuracy_drop: float = 0.02
    review_threshold: float = contract.TRAINER_DEFAULTS["review_threshold"]
    min_relative_robustness: float = 0.0
    max_flagged_known: float = 0.1
    beam_direct_workers: int = 0
    beam_running_mode: str = "auto"
    beam_args: str = ""
    setup_file: str = str(REPO_ROOT / "setup.py")
    backbone: str = DEFAULT_BACKBONE
    weights: str = ""
    backbone_provenance: Optional[dict] = None
    tune: bool = False
    tuner_trials: int = contract.TRAINER_DEFAULTS["tuner_trials"]
    fail_on_anomalies: bool = True
    containerised: bool = False
    num_classes: Optional[int] = None
    schema_sha256: Optional[str] = None

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise ValueError(f"profile (GEMSTONE_PROFILE) is {self.profile!r}: expected one of {', '.join(PROFILES)}")
        for name, value in {**PROFILE_DEFAULTS, **PROFILES[self.profile]}.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.edge_int8 not in EDGE_INT8_KINDS:
            raise ValueError(f"edge_int8 (GEMSTONE_EDGE_INT8) is {self.edge_int8!r}: expected one of "
                             f"{', '.join(EDGE_INT8_KINDS)}")
        self.home = self.home or str(paths.gemstone_home())
        self.data = self.data or str(paths.demo_data_dir(self.home) / "manifest.csv")
        self.pipeline_root = self.pipeline_root or str(paths.pipeline_root(self.pipeline_name, self.home))
        self.serving_dir = self.serving_dir or str(paths.serving_dir(self.pipeline_name, self.home))
        self.metadata_path = self.metadata_path or str(paths.metadata_path(self.pipeline_name, self.home))
        if self.schema_path is None:
            curated = SCHEMA_DIR / self.pipeline_name / "schema.pbtxt"
            self.schema_path = str(curated) if curated.exists() else ""  # "": infer with SchemaGen
        if self.num_classes is None and self.schema_path and os.path.exists(self.schema_path):
            self.num_classes = label_domain_size(self.schema_path)
        if self.schema_sha256 is None and self.schema_path and os.path.exists(self.schema_path):
            self.schema_sha256 = hashlib.sha256(Path(self.schema_path).read_bytes()).hexdigest()
        from_scratch = self.backbone in FROM_SCRATCH
        kind = "from_scratch" if from_scratch else self.backbone if self.backbone in DEFAULT_IMAGE_SIZE \
            else "keras_applications"
        self.image_size = self.image_size or DEFAULT_IMAGE_SIZE[kind]
        if self.backbone in backbones.BACKBONES and not self.weights:
            self.weights = str(backbones.weights_path(self.home, self.backbone))
            if self.backbone_provenance is None:
                provenance = backbones.read_provenance(self.home, self.backbone) or {}
                # What identifies the weights (not when or how fast they were fetched: the Trainer's
                # cache key includes this, and a re-fetch of the same weights must not retrain).
                self.backbone_provenance = {k: provenance[k] for k in PROVENANCE_KEYS if k in provenance}
        if self.weights == NO_WEIGHTS:
            self.weights = ""

    def check_weights(self) -> None:
        """Raises backbones.BackboneMissing (one line: what to do) when the pretrained weights are not there."""
        if self.weights and self.weights != "imagenet" and not os.path.isfile(self.weights):
            raise backbones.BackboneMissing(
                f"no backbone weights at {self.weights}: run `gemstone backbone fetch --backbone {self.backbone}` "
                f"(or `make backbone`), "
                f"or set GEMSTONE_BACKBONE=none to train from scratch")

    @classmethod
    def from_env(cls) -> "PipelineConfig":
        """Reads GEMSTONE_* variables; unset ones keep their defaults."""
        defaults = cls()
        schema = os.environ.get("GEMSTONE_SCHEMA")
        return cls(
            pipeline_name=_env("GEMSTONE_PIPELINE_NAME", defaults.pipeline_name),
            data=_env("GEMSTONE_DATA", ""),
            home=_env("GEMSTONE_HOME", ""),
            pipeline_root=_env("GEMSTONE_PIPELINE_ROOT", ""),
            serving_dir=_env("GEMSTONE_SERVING_DIR", ""),
            # GEMSTONE_SCHEMA=none forces SchemaGen even where a curated schema exists.
            schema_path=None if schema is None else ("" if schema.strip().lower() in ("", "none") else schema),
            image_size=int(_env("GEMSTONE_IMAGE_SIZE", "0")),
            epochs=int(_env("GEMSTONE_EPOCHS", str(defaults.epochs))),
            profile=_env("GEMSTONE_PROFILE", defaults.profile),
            fine_tune_epochs=_optional_int("GEMSTONE_FINE_TUNE_EPOCHS"),
            trainer_accelerator=os.environ.get("GEMSTONE_TRAINER_ACCELERATOR", "").strip() or None,
            trainer_memory=_optional_float("GEMSTONE_TRAINER_MEMORY"),
            trainer_cpu=_optional_float("GEMSTONE_TRAINER_CPU"),
            views=int(_env("GEMSTONE_VIEWS", str(defaults.views))),
            edge_int8=_env("GEMSTONE_EDGE_INT8", defaults.edge_int8),
            batch_size=int(_env("GEMSTONE_BATCH_SIZE", str(defaults.batch_size))),
            min_accuracy=float(_env("GEMSTONE_MIN_ACCURACY", str(defaults.min_accuracy))),
            max_accuracy_drop=float(_env("GEMSTONE_MAX_ACCURACY_DROP", str(defaults.max_accuracy_drop))),
            review_threshold=float(_env("GEMSTONE_REVIEW_THRESHOLD", str(defaults.review_threshold))),
            min_relative_robustness=float(_env("GEMSTONE_MIN_ROBUSTNESS", str(defaults.min_relative_robustness))),
            max_flagged_known=float(_env("GEMSTONE_MAX_FLAGGED_KNOWN", str(defaults.max_flagged_known))),
            beam_direct_workers=int(_env("GEMSTONE_BEAM_WORKERS", str(defaults.beam_direct_workers))),
            beam_running_mode=_env("GEMSTONE_BEAM_MODE", defaults.beam_running_mode),
            beam_args=_env("GEMSTONE_BEAM_ARGS", ""),
            backbone=_env("GEMSTONE_BACKBONE", DEFAULT_BACKBONE),
            weights=_env("GEMSTONE_WEIGHTS", ""),
            tune=_env("GEMSTONE_TUNE", "0").lower() in ("1", "true", "yes"),
            tuner_trials=int(_env("GEMSTONE_TUNER_TRIALS", str(defaults.tuner_trials))),
            fail_on_anomalies=_env("GEMSTONE_FAIL_ON_ANOMALIES", "1").lower() in ("1", "true", "yes"),
            containerised=_env("GEMSTONE_CONTAINERISED", "0").lower() in ("1", "true", "yes"),
        )

    def resolved_beam_mode(self) -> str:
        return auto_beam_mode() if self.beam_running_mode == "auto" else self.beam_running_mode

    def beam_pipeline_args(self) -> list[str]:
        """Beam options shared by every Beam-powered component.

        `--setup_file` names the project's dependencies for remote runners; the DirectRunner
        ignores it. Without a dependency option, TFX builds a source package of TFX alone and
        attaches it to every Beam component's run (2.7 s each, four a run).
        """
        return [
            "--direct_running_mode=" + self.resolved_beam_mode(),
            f"--direct_num_workers={self.beam_direct_workers}",
            f"--setup_file={self.setup_file}",
        ] + shlex.split(self.beam_args)
