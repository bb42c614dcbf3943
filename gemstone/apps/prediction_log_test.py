"""The prediction log: TF Serving's PredictionLog records, in TFRecord files TensorFlow reads back."""
import numpy as np
import pytest

from gemstone import contract
from gemstone.apps import prediction_log

OUTPUTS = {"label": np.array([b"Ruby", b"Spinel"], dtype=object), "confidence": np.array([0.9, 0.4], np.float32),
           "needs_review": np.array([False, True]), contract.HEATMAP_OUTPUT: np.array([b"png", b"png"], dtype=object),
           contract.SALIENCY_OUTPUT: np.zeros((2, 4, 4), np.float32)}


def test_a_request_is_one_record_tensorflow_reads(tmp_path):
    import tensorflow as tf

    writer = prediction_log.PredictionLogWriter(str(tmp_path))
    writer.write("gems", "3", contract.EXPLAIN_SIGNATURE, [b"photo-1", b"photo-2"], OUTPUTS)
    writer.write("gems", "3", contract.SERVING_SIGNATURE, [b"photo-3"], {k: v[:1] for k, v in OUTPUTS.items()})
    [path] = tmp_path.glob(prediction_log.FILE_PATTERN)
    assert path == writer.path
    # Read while the file is still open: every record written so far is whole.
    raw = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    assert len(raw) == 2
    writer.close()
    first, second = list(prediction_log.read(tmp_path))
    assert first.SerializeToString() == raw[0]
    request, response = first.predict_log.request, first.predict_log.response
    assert request.model_spec.name == "gems" and request.model_spec.version.value == 3
    assert request.model_spec.signature_name == contract.EXPLAIN_SIGNATURE
    assert tf.make_ndarray(request.inputs[contract.SERVING_INPUT]).tolist() == [b"photo-1", b"photo-2"]
    assert set(response.outputs) == {"label", "confidence", "needs_review"}  # no saliency maps
    assert tf.make_ndarray(response.outputs["label"]).tolist() == [b"Ruby", b"Spinel"]
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["confidence"]), [0.9, 0.4])
    assert first.log_metadata.model_spec.name == "gems" and first.log_metadata.timestamp_secs > 0
    assert second.predict_log.request.model_spec.signature_name == contract.SERVING_SIGNATURE


def test_files_rotate_and_close(tmp_path):
    writer = prediction_log.PredictionLogWriter(str(tmp_path), max_file_bytes=1)  # every record its own file
    for _ in range(3):
        writer.write("gems", "1", contract.SERVING_SIGNATURE, [b"photo"], {"label": OUTPUTS["label"][:1]})
    writer.close()
    writer.write("gems", "1", contract.SERVING_SIGNATURE, [b"photo"], {"label": OUTPUTS["label"][:1]})  # dropped
    files = sorted(tmp_path.glob(prediction_log.FILE_PATTERN))
    assert len(files) == 3 and [len(list(prediction_log.records(f))) for f in files] == [1, 1, 1]


def test_a_record_being_written_is_not_read_and_corruption_is_said(tmp_path):
    whole = prediction_log.frame(b"first") + prediction_log.frame(b"second")
    (tmp_path / "cut.tfrecord").write_bytes(whole[:-3])
    assert list(prediction_log.records(tmp_path / "cut.tfrecord")) == [b"first"]
    (tmp_path / "bad.tfrecord").write_bytes(whole.replace(b"second", b"sec0nd"))
    with pytest.raises(ValueError, match="corrupt"):
        list(prediction_log.records(tmp_path / "bad.tfrecord"))


def test_no_folder_logs_nothing():
    writer = prediction_log.PredictionLogWriter(None)
    writer.write("gems", "1", contract.SERVING_SIGNATURE, [b"photo"], {"label": OUTPUTS["label"][:1]})
    assert writer.path is None
