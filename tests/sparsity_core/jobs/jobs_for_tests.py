"""Job functions the worker tests run in its child processes (named by "module:function")."""

import os
import signal
import time


def ok_job(spec, progress):
    progress.metric("answer", 42.0, x=0.5)
    progress.update(1.0, "done")


def raising_job(spec, progress):
    progress.metric("before_error", 1.0)
    raise RuntimeError("boom: the job broke on purpose")


def sleepy_job(spec, progress):
    progress.update(0.1, "sleeping")
    time.sleep(60)


def dying_job(spec, progress):
    os.kill(os.getpid(), signal.SIGKILL)  # what the out-of-memory killer does


def oom_job(spec, progress):
    raise MemoryError("could not allocate 64 GiB")
