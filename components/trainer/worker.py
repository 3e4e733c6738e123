"""``python -m sluice.components.trainer.worker JOB.json``: one training worker process.

Configures logical CPU devices *before* anything initializes TensorFlow's runtime (``mirrored`` on a CPU-only
machine), then runs the job. A TensorFlow error exits non-zero with its message last in the log, which the
launcher shows; ``TrainingDiverged`` exits 3 with its one-line explanation.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from absl import logging

    logging.set_verbosity(logging.INFO)
    from sluice.components.trainer.loops import TrainingDiverged
    from sluice.components.trainer.strategies import configure_cpu_devices
    from sluice.components.trainer.train import TrainJob, train

    job = TrainJob.from_json(Path(argv[0]).read_text())
    training = job.contract.training
    if training.strategy == "mirrored":
        configure_cpu_devices(training.cpu_devices)
    try:
        train(job)
    except TrainingDiverged as e:
        print(f"TrainingDiverged: {e}", file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
