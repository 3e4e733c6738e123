"""Request logging for the local server, in TF Serving's format: ``PredictionLog`` records (a ``predict_log``
with the ``PredictRequest`` received and the ``PredictResponse`` sent, ``log_metadata`` with the model spec,
the sampling rate and the time) in TFRecord files — the messages TF Serving's ``logging_config`` hands its
log collector. ``sluice monitor`` reads them.

Why it cannot slow the answers: the request thread only draws the sample and puts references to what it
already has (the gRPC protos, or the REST request's parsed arrays and the outputs) on a bounded queue;
building protos, serializing and writing happen on one writer thread. When the writer falls behind and the
queue is full, a record is dropped and counted, never waited for; a writer that fails (disk full, no
permission) says so once and stops logging while serving goes on (what it would have logged is counted as
dropped). Only answered requests are logged (a refused request has no response to pair with).

Files: ``<dir>/requests-<UTC start>-<pid>-<n>.tfrecord``. The file being written is named ``….tfrecord.part``
and renamed when it reaches ``max_file_bytes``, when it is ``rotate_seconds`` old (so sparse traffic still
becomes readable), and when the server stops. A reader of ``*.tfrecord`` sees finished files only. A server
that was killed leaves its ``.part`` file: the next logger started on the same local directory finishes the
``.part`` files no live writer holds (each writer holds an exclusive ``flock`` on its file; a PID would say
nothing after a container restart, where every server is PID 1), and ``read_logs`` keeps the whole records of
a file whose last one was cut off. Paths go through ``tf.io.gfile``; on an object store (``gs://``) a file is
written once, at rotation — it is never flushed record by record, since each flush there re-uploads the whole
object.
"""

from __future__ import annotations

import os
import queue
import random
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

SUFFIX = ".tfrecord"
PART = ".part"
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
DEFAULT_ROTATE_SECONDS = 300.0
DEFAULT_QUEUE = 10_000
FRAMING = 16  # TFRecord's bytes around each record: length, its CRC, the data's CRC
PREDICT_LOG_FIELD = 6  # PredictionLog.predict_log (tensorflow_serving/apis/prediction_log.proto)
_STOP = object()


@dataclass
class LogStats:
    logged: int = 0
    dropped: int = 0
    files: int = 0
    error: Optional[str] = None


class RequestLogger:
    """Sampled, rotated ``PredictionLog`` files under ``directory`` (see the module docstring)."""

    def __init__(self, directory: str, sample_rate: float = 1.0, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                 queue_size: int = DEFAULT_QUEUE, seed: Optional[int] = None,
                 rotate_seconds: float = DEFAULT_ROTATE_SECONDS) -> None:
        import tensorflow as tf

        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"the sample rate must be within [0, 1], got {sample_rate}")
        if max_file_bytes < 1:
            raise ValueError(f"max_file_bytes must be positive, got {max_file_bytes}")
        if not rotate_seconds > 0:
            raise ValueError(f"rotate_seconds must be positive, got {rotate_seconds}")
        self.directory = directory.rstrip("/")
        self.sample_rate = sample_rate
        self.max_file_bytes = max_file_bytes
        self.rotate_seconds = rotate_seconds
        self.stats = LogStats()
        self._local = "://" not in self.directory
        self._closed = False
        self._drop_lock = threading.Lock()
        self._random = random.Random(seed)
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=queue_size)
        self._prefix = f"requests-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}"
        tf.io.gfile.makedirs(self.directory)
        self.recovered = recover_parts(self.directory) if self._local else []
        self._thread = threading.Thread(target=self._write_all, name="sluice-request-log", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- the request threads' side
    def _drop(self) -> None:
        with self._drop_lock:
            self.stats.dropped += 1

    def _admit(self) -> bool:
        if self.sample_rate <= 0.0 or not (self.sample_rate >= 1.0 or self._random.random() < self.sample_rate):
            return False
        if self.stats.error is not None or self._closed:  # sampled, but nobody writes it any more
            self._drop()
            return False
        return True

    def _put(self, item: Any) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._drop()

    def log_arrays(self, model: str, version: int, signature: str, inputs: Dict[str, np.ndarray],
                   outputs: Dict[str, np.ndarray]) -> None:
        """A REST request: the inputs as parsed, the outputs as computed (protos are built by the writer)."""
        if self._admit():
            self._put(("arrays", time.time(), model, version, signature, inputs, outputs))

    def log_protos(self, request: Any, response: Any) -> None:
        """A gRPC request (its bytes as received, or the message) and its response, as sent."""
        if self._admit():
            self._put(("protos", time.time(), request, response))

    # ---------------------------------------------------------------- the writer thread
    def _record(self, item: Any) -> bytes:
        from tensorflow_serving.apis import prediction_log_pb2

        if item[0] == "protos":
            _, stamp, request, response = item
            log = prediction_log_pb2.PredictionLog()
            fill_metadata(log.log_metadata, response.model_spec, stamp, self.sample_rate)
            raw = request if isinstance(request, bytes) else request.SerializeToString()
            # A message's bytes are its fields' bytes: the received request goes in as it came, unparsed and
            # uncopied (serializing a 16-input request again costs about 0.1 ms of the server's GIL).
            predict_log = _field(1, raw) + _field(2, response.SerializeToString())
            return log.SerializeToString() + _field(PREDICT_LOG_FIELD, predict_log)
        _, stamp, model, version, signature, inputs, outputs = item
        return arrays_log(model, version, signature, inputs, outputs, stamp, self.sample_rate)

    def _write_all(self) -> None:
        import tensorflow as tf

        writer, path, size, opened = None, None, 0, 0.0
        try:
            while True:
                wait = None if writer is None else max(0.0, opened + self.rotate_seconds - time.monotonic())
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:  # the open file is rotate_seconds old: make it readable
                    writer.close()
                    self._finish(path)
                    writer = None
                    continue
                if item is _STOP:
                    break
                try:
                    record = self._record(item)
                except Exception:
                    self._drop()  # the record that failed is lost too
                    raise
                if writer is not None and (size + len(record) + FRAMING > self.max_file_bytes
                                           or time.monotonic() - opened >= self.rotate_seconds):
                    writer.close()
                    self._finish(path)
                    writer = None
                if writer is None:
                    path = f"{self.directory}/{self._prefix}-{self.stats.files:05d}{SUFFIX}{PART}"
                    writer, size, opened = tf.io.TFRecordWriter(path), 0, time.monotonic()
                    self._hold(path)
                    self.stats.files += 1
                try:
                    writer.write(record)
                except Exception:
                    self._drop()
                    raise
                size += len(record) + FRAMING
                self.stats.logged += 1
                if self._local and self._queue.empty():
                    writer.flush()  # a killed server loses nothing written before the lull
        except Exception as e:  # noqa: BLE001 - logging stops, serving does not
            self.stats.error = f"{type(e).__name__}: {e}"[:300]
            print(f"sluice serve: request logging stopped ({self.stats.error}); requests are still answered",
                  file=sys.stderr, flush=True)
            while self._queue.get() is not _STOP:  # the rest are dropped, and counted, until close()
                self._drop()
        finally:
            if writer is not None:
                try:
                    writer.close()
                    self._finish(path)
                except Exception as e:  # noqa: BLE001
                    self.stats.error = self.stats.error or f"{type(e).__name__}: {e}"[:300]

    def _hold(self, path: str) -> None:
        """On a local directory, an exclusive ``flock`` on the file being written, for as long as this process
        writes it: ``recover_parts`` finishes only files nobody holds (a PID says nothing across container
        restarts, where every server is PID 1)."""
        if self._local:
            import fcntl

            self._lock = open(path, "rb")  # noqa: SIM115 - held until _finish; the writer has its own descriptor
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _finish(self, path: str) -> None:
        import tensorflow as tf

        tf.io.gfile.rename(path, path[: -len(PART)], overwrite=False)
        if getattr(self, "_lock", None) is not None:
            self._lock.close()
            self._lock = None

    def close(self, timeout: float = 60.0) -> LogStats:
        """Write what is queued, close and rename the open file; the counts. A request answered after this
        (one still in flight while the server stopped) is counted as dropped."""
        self._closed = True
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:  # the writer is stuck: what is queued is lost
            self.stats.error = self.stats.error or "the writer did not drain the queue"
        self._thread.join(timeout)
        while True:  # admitted just before close, queued behind the stop: counted, not silently lost
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            self._drop()
        return self.stats

    def summary(self) -> str:
        s = self.stats
        text = f"request log: {s.logged} requests in {s.files} file(s) under {self.directory}"
        if s.dropped:
            text += f"; {s.dropped} dropped (the writer fell behind or failed)"
        if s.error:
            text += f"; stopped: {s.error}"
        return text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2): tag, length, bytes."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def fill_metadata(meta: Any, spec: Any, stamp: float, sample_rate: float) -> None:
    """A ``LogMetadata``: the model spec, the sampling rate, the ``serve`` tag and the time."""
    meta.model_spec.CopyFrom(spec)
    meta.sampling_config.sampling_rate = sample_rate
    meta.saved_model_tags.append("serve")
    meta.timestamp_secs = int(stamp)


def arrays_log(model: str, version: int, signature: str, inputs: Dict[str, np.ndarray],
               outputs: Dict[str, np.ndarray], stamp: float, sample_rate: float) -> bytes:
    """A serialized ``PredictionLog`` of a predict call given as arrays (a REST request as parsed; a row that
    ``sluice predict --output`` scored)."""
    from tensorflow_serving.apis import prediction_log_pb2

    log = prediction_log_pb2.PredictionLog()
    request = log.predict_log.request
    spec = request.model_spec
    spec.name, spec.signature_name, spec.version.value = model, signature, version
    for key, value in inputs.items():
        fill_tensor(request.inputs[key], value)
    log.predict_log.response.model_spec.CopyFrom(spec)
    for key, value in outputs.items():
        fill_tensor(log.predict_log.response.outputs[key], value)
    fill_metadata(log.log_metadata, spec, stamp, sample_rate)
    return log.SerializeToString()


def fill_tensor(proto: Any, array: np.ndarray) -> None:
    """``array`` into the TensorProto ``proto``: numbers as ``tensor_content`` (their bytes, as TF Serving
    writes them), strings as ``string_val``. ``tf.make_tensor_proto`` gives the same tensor at about four
    times the cost, and the writer shares the cores with the requests it logs."""
    import tensorflow as tf

    array = np.asarray(array)
    for n in array.shape:
        proto.tensor_shape.dim.add().size = n
    if array.dtype == object or array.dtype.kind in "SU":
        proto.dtype = tf.string.as_datatype_enum
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1))
    else:
        proto.dtype = tf.as_dtype(array.dtype).as_datatype_enum
        proto.tensor_content = np.ascontiguousarray(array).tobytes()


def recover_parts(directory: str) -> List[str]:
    """Finish the ``.part`` files (of a local ``directory``) that no live writer holds — left by servers that
    were killed: their whole records become readable. A file a running server writes is locked and stays."""
    import fcntl

    import tensorflow as tf

    done = []
    for path in sorted(tf.io.gfile.glob(f"{directory}/requests-*{SUFFIX}{PART}")):
        with open(path, "rb") as held:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            tf.io.gfile.rename(path, path[: -len(PART)], overwrite=False)
        done.append(path[: -len(PART)])
    return done


def iter_logs(directory: str) -> Iterator[Any]:
    """Every ``PredictionLog`` in the finished files under ``directory``, oldest file first, one at a time. A
    file whose last record was cut off (a server killed mid-write) gives the records before it."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    for path in sorted(tf.io.gfile.glob(f"{directory.rstrip('/')}/*{SUFFIX}")):
        try:
            for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
                yield prediction_log_pb2.PredictionLog.FromString(raw)
        except tf.errors.DataLossError:
            print(f"sluice: {path} ends in a cut-off record (its writer was killed); the records before it are read",
                  file=sys.stderr)


def read_logs(directory: str) -> List[Any]:
    """``iter_logs`` as a list (tests, small directories)."""
    return list(iter_logs(directory))
