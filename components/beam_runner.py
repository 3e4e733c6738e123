"""Beam's DirectRunner for ``direct_running_mode: multi_processing``, with SDK workers that die with sluice.

In that mode Beam (2.59, ``fn_api_runner.FnApiRunner``) starts each SDK worker as
``sh -c "python -m apache_beam.runners.worker.sdk_worker_main"``; a ``sluice run`` or ``sluice predict``
killed with SIGKILL left its workers running (still scoring 30 s later: tests/faults). This runner is the same
engine with that one command changed: ``exec`` makes the shell become ``lifeline``'s wrapper, so this process
stays the worker's parent and the kernel kills the worker when it dies (``components/lifeline.py``). Beam
starts each worker from a thread that then waits for it (``local_job_service.SubprocessSdkWorker.run``), so
a worker outlives no thread still using it.

``BeamConfig.args()`` names it (``--runner=sluice.components.beam_runner.DirectRunner``; Beam imports a
dotted runner name) for multi_processing only; in_memory and multi_threading keep Beam's DirectRunner. One
more difference: tf.Transform picks its TensorFlow session settings by the runner's exact type
(``tensorflow_transform.beam.impl``) and knows only Beam's, so Transform's sessions in these workers run with
TensorFlow's default thread pools instead of tf.Transform's cap for the DirectRunner.
"""

from __future__ import annotations

import shlex
import sys

from apache_beam.options.pipeline_options import DirectOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.transforms import environments

from sluice.components import lifeline

def worker_environment() -> environments.SubprocessSDKEnvironment:
    worker = lifeline.command([sys.executable, "-m", "apache_beam.runners.worker.sdk_worker_main"])
    return environments.SubprocessSDKEnvironment.from_command_string("exec " + shlex.join(worker))


class DirectRunner(FnApiRunner):
    def run_pipeline(self, pipeline, options):
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle

        # The workers get every pipeline option, as Beam's own DirectRunner gives them (SwitchingDirectRunner).
        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        self._provision_info = fn_runner.ExtendedProvisionInfo(
            beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
        direct = options.view_as(DirectOptions)
        if direct.direct_running_mode == "multi_processing":
            # FnApiRunner would replace the environment with its own worker command in this mode; as
            # "in_memory" with this environment and direct_num_workers it starts the same workers, wrapped
            # (and logs that in_memory with several workers should be multi_processing: it is).
            direct.direct_running_mode = "in_memory"
            self._default_environment = worker_environment()
        return super().run_pipeline(pipeline, options)
