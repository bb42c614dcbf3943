"""The server's prediction log: TF Serving's PredictionLog protos in TFRecord files, one record per request.

TF Serving logs requests in this form when a model's config has a
`logging_config`, so that `gemstone drift` (and TFX's BulkInferrer, TFDV,
TFMA) read what this server and a production TF Serving log alike:

    PredictionLog(
      log_metadata=LogMetadata(model_spec, sampling_config(sampling_rate=1), saved_model_tags=["serve"],
                               timestamp_secs),
      predict_log=PredictLog(
        request=PredictRequest(model_spec=ModelSpec(name, version, signature_name),
                               inputs={"images": string tensor [B] of the encoded photos}),
        response=PredictResponse(model_spec, outputs={each output of serving_default: its tensor})))

The photos are what the model was given: validated and normalised by
gemstone.images (upright 8-bit RGB JPEG or PNG, at most 1024 px). `:explain`
requests are logged too, with the same outputs (not the saliency maps).

Files: <log dir>/prediction_log-<start time>-<pid>-<n>.tfrecord. Each record is
framed in memory and written with one write(), so a reader sees whole records;
a file is closed and the next begun past MAX_FILE_BYTES, and the last is closed
at shutdown.
"""
from __future__ import annotations

import os
import struct
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List, Mapping, Optional

import google_crc32c

from gemstone import contract

FILE_PREFIX, FILE_SUFFIX = "prediction_log-", ".tfrecord"
FILE_PATTERN = f"{FILE_PREFIX}*{FILE_SUFFIX}"
MAX_FILE_BYTES = 64 * 1024 * 1024
# Outputs of the explain signature that serving_default does not have: not logged.
EXPLAIN_ONLY_OUTPUTS = (contract.SALIENCY_OUTPUT, contract.HEATMAP_OUTPUT)


def _masked_crc(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C, rotated and offset (so that a checksum of checksums differs)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One TFRecord: length (uint64), its checksum, the data, its checksum (all little-endian)."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


def records(path) -> Iterator[bytes]:
    """The records of a TFRecord file (uncompressed), checksums checked; a record cut short ends the file."""
    with open(path, "rb") as f:
        while True:
            header = f.read(12)
            if len(header) < 12:
                return
            (length,), (length_crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
            if _masked_crc(header[:8]) != length_crc:
                raise ValueError(f"{path}: a record's length is corrupt")
            body = f.read(length + 4)
            if len(body) < length + 4:
                return  # being written
            if _masked_crc(body[:length]) != struct.unpack("<I", body[length:])[0]:
                raise ValueError(f"{path}: a record's data is corrupt")
            yield body[:length]


def read(log_dir) -> Iterator[Any]:
    """The PredictionLog protos of every log file in a folder, oldest file first."""
    from tensorflow_serving.apis import prediction_log_pb2

    for path in sorted(Path(log_dir).glob(FILE_PATTERN)):
        for data in records(path):
            yield prediction_log_pb2.PredictionLog.FromString(data)


def prediction_log(model_name: str, version: str, signature: str, photos: List[bytes],
                   outputs: Mapping[str, Any], when: Optional[float] = None):
    """The PredictionLog proto of one request: its photos and the outputs it was answered with."""
    import tensorflow as tf
    from tensorflow_serving.apis import logging_pb2, model_pb2, predict_pb2, prediction_log_pb2

    spec = model_pb2.ModelSpec(name=model_name, signature_name=signature)
    if version.isdigit():
        spec.version.value = int(version)
    request = predict_pb2.PredictRequest(model_spec=spec)
    request.inputs[contract.SERVING_INPUT].CopyFrom(tf.make_tensor_proto(photos, dtype=tf.string))
    response = predict_pb2.PredictResponse(model_spec=spec)
    for name, value in outputs.items():
        if name not in EXPLAIN_ONLY_OUTPUTS:
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    metadata = logging_pb2.LogMetadata(model_spec=spec, saved_model_tags=["serve"],
                                       timestamp_secs=int(when if when is not None else time.time()))
    metadata.sampling_config.sampling_rate = 1.0
    return prediction_log_pb2.PredictionLog(
        log_metadata=metadata, predict_log=prediction_log_pb2.PredictLog(request=request, response=response))


class PredictionLogWriter:
    """Appends one PredictionLog record per request to the current file of `log_dir` (None: logs nothing)."""

    def __init__(self, log_dir: Optional[str], max_file_bytes: int = MAX_FILE_BYTES):
        self.folder = Path(log_dir) if log_dir else None
        self.max_file_bytes = max_file_bytes
        self._lock = threading.Lock()
        self._file = None
        self._path: Optional[Path] = None
        self._count = 0
        self._closed = False
        self._stamp = time.strftime("%Y%m%d-%H%M%S")
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def path(self) -> Optional[Path]:
        """The file being written, if any."""
        return self._path

    def _open(self) -> None:
        self._count += 1
        self._path = self.folder / f"{FILE_PREFIX}{self._stamp}-{os.getpid()}-{self._count:04d}{FILE_SUFFIX}"
        # Unbuffered: each record reaches the file in one write() of its whole frame.
        self._file = open(self._path, "ab", buffering=0)

    def write(self, model_name: str, version: str, signature: str, photos: List[bytes],
              outputs: Mapping[str, Any]) -> None:
        if not self.folder:
            return
        data = frame(prediction_log(model_name, version, signature, photos, outputs).SerializeToString())
        with self._lock:
            if self._closed:
                return  # shutting down: the server no longer answers either
            if self._file is not None and self._file.tell() and self._file.tell() + len(data) > self.max_file_bytes:
                self._close_file()  # rotated: the next file begins with this record
            if self._file is None:
                self._open()
            view = memoryview(data)
            while view:  # a raw file may take less than all in one call (it does not, for regular files)
                view = view[self._file.write(view):]

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> None:
        """Closes the current file; later writes are dropped (the server is stopping)."""
        with self._lock:
            self._closed = True
            self._close_file()
