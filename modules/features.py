"""Feature names shared by the Transform and Trainer modules and the serving signatures.

Raw features come from ImageExampleGen; transformed ones (suffix `_xf`) from
`modules/transform.py`. Keeping the names here means one place to change them.
"""

IMAGE_KEY = "image"  # encoded JPEG/PNG bytes
LABEL_KEY = "label"  # variety, e.g. "Sapphire Blue"
FAMILY_KEY = "family"  # mineral family, e.g. "Corundum"
SIZE_BUCKET_KEY = "size_bucket"  # short side of the photo as ingested, e.g. "small (<256 px)"

# Raw features the serving signatures need from a client or a tf.Example.
SERVING_RAW_KEYS = (IMAGE_KEY,)
# Raw features TFMA needs from an evaluation example (serving keys + labels).
EVAL_RAW_KEYS = (IMAGE_KEY, LABEL_KEY, FAMILY_KEY)

LABEL_VOCAB = "label"
FAMILY_VOCAB = "family"


def transformed_name(key: str) -> str:
    return key + "_xf"


IMAGE_XF = transformed_name(IMAGE_KEY)
LABEL_XF = transformed_name(LABEL_KEY)
FAMILY_XF = transformed_name(FAMILY_KEY)
# Colour histogram of the photo, computed by Transform from the decoded image.
COLOUR_XF = "colour_xf"

# What the Keras model takes: the resized picture and its colour histogram.
MODEL_INPUT_KEYS = (IMAGE_XF, COLOUR_XF)

# Model output heads.
VARIETY_HEAD = "variety"
FAMILY_HEAD = "family"
