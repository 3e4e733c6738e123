"""Runs a ``TrainJob`` where its strategy can run: in this process, or in fresh local worker processes.

A TFX Trainer executes in a process whose TensorFlow runtime is already initialized (Transform ran there),
so ``mirrored`` over logical CPU devices and a local ``multi_worker`` cluster need new processes
(``strategies.needs_fresh_process``). Workers get the job (its ``TrainerContract`` included) as JSON, and ``TF_CONFIG`` on free localhost ports
for multi-worker. If a worker fails, the others are stopped (they would wait forever on a collective) and
the error names the worker and ends with the tail of its log.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import List

from absl import logging

from sluice.components import artifact_io as aio, step_process
from sluice.components.trainer.strategies import local_cluster, needs_fresh_process
from sluice.components.trainer.train import TrainJob, train


class WorkerFailed(RuntimeError):
    pass


def _free_ports(n: int) -> List[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _failure(index: int, code: int, log: Path) -> Exception:
    if code == 3:  # worker.py: the training diverged; its one-line explanation is the last such line
        lines = [l for l in step_process.log_lines(log) if l.startswith("TrainingDiverged: ")]
        if lines:
            return WorkerFailed(lines[-1].removeprefix("TrainingDiverged: ") + f" (worker {index}; log: {log})")
    return WorkerFailed(f"training worker {index} failed ({step_process.how_it_ended(code)}); its log ({log}) "
                        "ends:\n" + step_process.tail(log))


def run_workers(job: TrainJob, workdir: str, timeout_s: float | None = None) -> None:
    """Train ``job`` in new processes (1 for mirrored, ``training.workers`` for multi_worker) and wait."""
    training = job.contract.training
    count = training.workers if training.strategy == "multi_worker" else 1
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    job_file = work / "train_job.json"
    job_file.write_text(job.to_json())
    ports = _free_ports(count) if training.strategy == "multi_worker" else []
    procs = []
    for index in range(count):
        env = dict(os.environ)
        if ports:
            env["TF_CONFIG"] = local_cluster(ports, index)
        log = work / f"worker-{index}.log"
        procs.append((index, log, step_process.start(
            [sys.executable, "-m", "sluice.components.trainer.worker", str(job_file)], log, env=env)))
    logging.info("started %d training worker process(es); logs in %s", count, work)
    start = time.monotonic()
    try:
        while any(p.poll() is None for _, _, p in procs):
            failed = [(i, log, p) for i, log, p in procs if p.poll() not in (None, 0)]
            if failed:
                i, log, p = failed[0]
                raise _failure(i, p.returncode, log)
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                raise WorkerFailed(f"training workers still running after {timeout_s:.0f} s; logs in {work}")
            time.sleep(0.2)
        for i, log, p in procs:
            if p.returncode != 0:
                raise _failure(i, p.returncode, log)
    finally:
        for _, _, p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for _, log, _ in procs:
        logging.info("worker log %s:\n%s", log, step_process.tail(log, 15))


def launch(job: TrainJob, workdir: str) -> None:
    """Train in-process when the strategy allows it, else in worker processes.

    Workers read their job file and write their logs locally; when ``workdir`` is a URI (gs:// on Vertex)
    they run in a local temp dir and their logs are copied to ``workdir`` afterwards, failed or not."""
    if not needs_fresh_process(job.contract.training):
        train(job)
    elif aio.is_local(workdir):
        run_workers(job, workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="sluice-workers-") as local:
            try:
                run_workers(job, local)
            finally:
                aio.keep_logs(local, workdir)
