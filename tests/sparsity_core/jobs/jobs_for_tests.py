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


def magnitude_job(spec, ctx):
    """A real, tiny computation: magnitude-prune the 8x8 matrix [1..64] at each target and report the
    measured sparsity (at 0.5: the 32 smallest, 1..32, become 0, so exactly 0.5)."""
    weights = list(range(1, 65))
    for i, target in enumerate(spec.sparsities):
        cut = int(round(target * len(weights)))
        pruned = [0 if w <= cut else w for w in weights]
        ctx.metric("sparsity", sum(w == 0 for w in pruned) / len(pruned), x=target)
        ctx.update((i + 1) / len(spec.sparsities), f"target {target:g}")
    time.sleep(0.5)  # long enough that two nodes share the queue


def ticking_job(spec, ctx):
    """Writes a metric every 0.1 s for a minute: a job that is visibly alive until it is ended."""
    ctx.update(0.1, "ticking")
    for i in range(600):
        ctx.metric("tick", float(i), x=float(i))
        time.sleep(0.1)


def gpu_job(spec, ctx):
    """Stands in for a CUDA job on a machine without CUDA: records the GPU Ray handed the task (its
    CUDA_VISIBLE_DEVICES) and never touches torch.cuda."""
    ctx.info(cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
    ctx.metric("ran", 1.0)
    ctx.update(1.0, "done")
