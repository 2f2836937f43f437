"""Job functions the worker tests run in its child processes (named by "module:function")."""

import os
import signal
import time


def ok_job(spec, ctx):
    ctx.metric("answer", 42.0, x=0.5)
    ctx.update(1.0, "done")


def params_job(spec, ctx):
    """Records the parameters the job was handed, as the worker read them from the store."""
    ctx.info(params=spec.params)


def raising_job(spec, ctx):
    ctx.metric("before_error", 1.0)
    raise RuntimeError("boom: the job broke on purpose")


def sleepy_job(spec, ctx):
    ctx.update(0.1, "sleeping")
    time.sleep(60)


def dying_job(spec, ctx):
    os.kill(os.getpid(), signal.SIGKILL)  # what the out-of-memory killer does


def oom_job(spec, ctx):
    raise MemoryError("could not allocate 64 GiB")
