"""submitit's job environment mapped onto torchrun's variables, so that a job of several tasks
trains as a torchrun job does (``engine.distributed.init_distributed`` reads them)."""

from __future__ import annotations


def export_submitit_env() -> bool:
    """Inside a submitit job of several tasks, set torchrun's variables from submitit's.

    ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` come from
    ``submitit.JobEnvironment`` (one task per GPU), so that
    ``engine.distributed.init_distributed`` joins the group as it does under torchrun.
    ``CUDA_VISIBLE_DEVICES`` is left alone: every task sees the job's GPUs and takes the one of
    its local rank. Returns True when it set them.
    """
    try:
        import submitit
    except ImportError:  # submitit is a dependency; a stripped install simply has no launcher
        return False
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job
        return False
    if env.num_tasks <= 1:
        return False
    submitit.helpers.TorchDistributedEnvironment().export(
        set_cuda_visible_devices=False, overwrite=True
    )
    return True
