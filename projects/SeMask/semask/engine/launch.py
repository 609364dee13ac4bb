"""Distributed launch: detectron2's ``launch`` (NCCL) on GPUs, the same on CPUs with gloo."""

import logging
from datetime import timedelta
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as launch_gpu
from detectron2.engine.launch import DEFAULT_TIMEOUT, _find_free_port
from detectron2.utils import comm


def launch(
    main_func: Callable[..., Any],
    num_processes_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    args: Sequence[Any] = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    """Run ``main_func(*args)`` in ``num_processes_per_machine`` processes on each machine.

    With CUDA this is detectron2's :func:`~detectron2.engine.launch` (one process per GPU,
    NCCL). Without CUDA the processes are CPU workers joined by a gloo process group; the
    arguments mean the same (``--num-gpus`` then counts CPU processes).
    """
    if torch.cuda.is_available():
        launch_gpu(
            main_func,
            num_processes_per_machine,
            num_machines,
            machine_rank,
            dist_url,
            args=tuple(args),
            timeout=timeout,
        )
        return
    world_size = num_machines * num_processes_per_machine
    if world_size == 1:
        main_func(*args)
        return
    if dist_url is None or dist_url == "auto":
        if num_machines != 1:
            raise ValueError("dist_url must name the main machine in a multi-machine job")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    mp.start_processes(
        _cpu_worker,
        nprocs=num_processes_per_machine,
        args=(
            main_func,
            world_size,
            num_processes_per_machine,
            machine_rank,
            dist_url,
            tuple(args),
            timeout,
        ),
        daemon=False,
        start_method="spawn",
    )


def _cpu_worker(
    local_rank: int,
    main_func: Callable[..., Any],
    world_size: int,
    num_processes_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: Sequence[Any],
    timeout: timedelta,
) -> None:
    global_rank = machine_rank * num_processes_per_machine + local_rank
    try:
        dist.init_process_group(
            backend="gloo",
            init_method=dist_url,
            world_size=world_size,
            rank=global_rank,
            timeout=timeout,
        )
    except Exception:
        logging.getLogger(__name__).error(f"process group URL: {dist_url}")
        raise
    num_machines = world_size // num_processes_per_machine
    for machine in range(num_machines):
        ranks = range(
            machine * num_processes_per_machine, (machine + 1) * num_processes_per_machine
        )
        group = dist.new_group(list(ranks))
        if machine == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()
    main_func(*args)
