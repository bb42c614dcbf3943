"""gemstone.backbones' names and provenance: valid weights are the ones provenance.json records."""
import json

import pytest

from gemstone import backbones



@pytest.mark.parametrize("backbone", backbones.BACKBONES)
def test_damaged_weights_are_not_valid(tmp_path, backbone):
    folder = backbones.backbone_dir(str(tmp_path), backbone)
    folder.mkdir(parents=True)
    weights = folder / backbones.weights_file(backbone)
    weights.write_bytes(b"weights")
    (folder / backbones.PROVENANCE_FILE).write_text(json.dumps({"weights_sha256": backbones.sha256_file(weights)}))
    assert backbones.require_weights(str(tmp_path), backbone) == backbones.weights_path(str(tmp_path), backbone)
    weights.write_bytes(b"weightz")
    with pytest.raises(backbones.BackboneMissing, match="does not match the sha256.*--force"):
        backbones.require_weights(str(tmp_path), backbone)
