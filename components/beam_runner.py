"""Beam's DirectRunner for ``direct_running_mode: multi_processing``, with SDK workers that die with sluice.

In that mode Beam (2.59, ``fn_api_runner.FnApiRunner``) starts each SDK worker as
``sh -c "python -m apache_beam.runners.worker.sdk_worker_main"``; a ``sluice run`` or ``sluice predict``
killed with SIGKILL left its workers running (still scoring 30 s later: tests/faults). This runner is the same
engine with that one command changed: ``exec`` makes the shell become ``lifeline``'s wrapper, so this process
stays the worker's parent and the kernel kills the worker when it dies (``components/lifeline.py``). Beam
starts each worker from a thread that then waits for it (``local_job_service.SubprocessSdkWorker.run``), so
a worker outlives no thread still using it.

``BeamConfig.args()`` names it (``--runner=sluice.components.beam_runner.DirectRunner``; Beam imports a
dotted runner name) for multi_processing only; in_memory and multi_threading keep Beam's DirectRunner.
"""

from __future__ import annotations

import shlex
import sys

from apache_beam.options.pipeline_options import DirectOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.transforms import environments

from sluice.components import lifeline

NAME = "sluice.components.beam_runner.DirectRunner"


def worker_environment() -> environments.SubprocessSDKEnvironment:
    worker = lifeline.command([sys.executable, "-m", "apache_beam.runners.worker.sdk_worker_main"])
    return environments.SubprocessSDKEnvironment.from_command_string("exec " + shlex.join(worker))


class DirectRunner(FnApiRunner):
    def run_pipeline(self, pipeline, options):
        direct = options.view_as(DirectOptions)
        if direct.direct_running_mode == "multi_processing":
            # FnApiRunner would replace the environment with its own worker command in this mode; as
            # "in_memory" with this environment and direct_num_workers it starts the same workers, wrapped.
            direct.direct_running_mode = "in_memory"
            self._default_environment = worker_environment()
        return super().run_pipeline(pipeline, options)
