"""Writes the curated schemas beside this file (run once, then review and edit the .pbtxt by hand).

    python -m gemstone.schema.curate

Each pipeline name gets `schema/<pipeline-name>/schema.pbtxt`, which the
pipeline imports with ImportSchemaGen instead of inferring one: the label and
family domains are the classes the model may know, so an unknown label, a
missing image or an implausible size or statistic stops the run at the data
gate (see components/data_gate).
"""
import csv

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from gemstone import demo_data, image_stats, images, ingestion
from gemstone.schema import FAMILY_MAP, SCHEMA_DIR

SOURCE_FORMATS = ["bmp", "gif", "jpeg", "mpo", "png", "tiff", "webp"]
# Plausible ranges of the image statistics (gemstone/image_stats.py).
STAT_RANGES = {"brightness": (0.0, 1.0), "contrast": (0.0, 1.0), "saturation": (0.0, 1.0),
               "sharpness": (0.0, 6.0), "aspect_ratio": (0.1, 10.0)}


def make(labels, families, comment: str) -> str:
    schema = schema_pb2.Schema()

    def feature(name, kind, required=True, domain=None):
        f = schema.feature.add()
        f.name, f.type = name, kind
        if required:
            f.presence.min_fraction, f.presence.min_count = 1.0, 1
        f.shape.dim.add().size = 1
        if domain:
            f.domain = domain
        return f

    feature("image", schema_pb2.BYTES).image_domain.SetInParent()
    feature("label", schema_pb2.BYTES, domain="label")
    feature("family", schema_pb2.BYTES, domain="family")
    for name in ("stone_id", "group_id", "source_path", "sha256", "phash"):
        feature(name, schema_pb2.BYTES)
    feature("source_format", schema_pb2.BYTES, domain="source_format")
    for name in ("width", "height"):
        f = feature(name, schema_pb2.INT)
        f.int_domain.min, f.int_domain.max = 8, images.DEFAULT_MAX_SIDE
    for name in image_stats.NUMERIC:
        f = feature(name, schema_pb2.FLOAT)
        f.float_domain.min, f.float_domain.max = STAT_RANGES[name]
    feature("size_bucket", schema_pb2.BYTES, domain="size_bucket")
    size_buckets = [name for _, name in ingestion.SIZE_BUCKETS]
    for name, values in (("label", labels), ("family", families), ("source_format", SOURCE_FORMATS),
                         ("size_bucket", size_buckets)):
        domain = schema.string_domain.add()
        domain.name = name
        domain.value.extend(sorted(set(values)))
    return "# " + "\n# ".join(comment.strip().splitlines()) + "\n" + text_format.MessageToString(schema)


def write(pipeline_name, labels, families, comment):
    path = SCHEMA_DIR / pipeline_name / "schema.pbtxt"
    path.parent.mkdir(exist_ok=True)
    path.write_text(make(labels, families, comment))
    print(f"wrote {path}")


if __name__ == "__main__":
    write("gemstone-demo", demo_data.VARIETIES, demo_data.VARIETIES.values(), """
Curated schema of the generated demo data (pipeline `gemstone-demo`), made by schema/curate.py.
ImportSchemaGen loads it; ExampleValidator checks every run's statistics against it and the
data gate stops the run on an anomaly: an unknown variety or family, a missing image or label,
an implausible size or image statistic.""")
    with open(FAMILY_MAP, newline="") as f:
        rows = list(csv.DictReader(f))
    write("gem88", [r["variety"] for r in rows], [r["family"] for r in rows], """
Curated schema of the 88-class reference photographs (pipeline `gem88`), made by schema/curate.py.
Labels are the 88 varieties of schema/families.csv, families their mineral families.""")
