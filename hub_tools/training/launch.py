"""`babyhub train --num-processes N`: `train_dpo.py` on N processes, through the launcher the machine calls for.

On GPUs that is `accelerate launch --multi_gpu --num_processes N` (for DeepSpeed or FSDP call `accelerate launch
--config_file recipes/accelerate/...` yourself); on CPUs it is `torchrun --standalone --nproc_per_node N` (gloo:
`accelerate launch --cpu` starts a single process unless MPI is set up). torchrun gives each process one thread
unless OMP_NUM_THREADS says otherwise. The option is taken out of the arguments; the rest go to `train_dpo.py`
untouched.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hub_tools.errors import BabyhubError

OPTION = "--num-processes"


def split_num_processes(argv: list[str]) -> tuple[int, list[str]]:
    """Take `--num-processes N` (or `--num-processes=N`) out of `argv`.

    Args:
        argv: the arguments of `babyhub train`.

    Returns:
        N (1 without the option) and the other arguments, in order.
    """
    rest, value = [], None
    args = iter(argv)
    for arg in args:
        if arg == OPTION:
            value = next(args, None)
            if value is None:
                raise BabyhubError(f"{OPTION} needs a number of processes, e.g. {OPTION} 2.")
        elif arg.startswith(OPTION + "="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if value is None:
        return 1, rest
    if not value.isdigit() or int(value) < 1:
        raise BabyhubError(f"{OPTION} {value}: give a whole number of processes, at least 1.")
    return int(value), rest


def launch_command(script: str | Path, argv: list[str], num_processes: int, *, gpus: int) -> list[str]:
    """The command that runs `script argv` on `num_processes` processes.

    Args:
        script: the training script (`train_dpo.py`).
        argv: its arguments.
        num_processes: how many processes.
        gpus: the GPUs this machine has (0: the processes run on CPUs, with gloo).

    Returns:
        The command line, starting with this Python.
    """
    if gpus:
        launcher = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes)]
    else:
        launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(num_processes)]
    return [sys.executable, *launcher, str(script), *argv]


def run_processes(script: str | Path, argv: list[str], num_processes: int) -> int:
    """Run `script argv` on `num_processes` processes (`launch_command`) and wait for them.

    Returns:
        The launcher's exit code (non-zero when any process failed).
    """
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return subprocess.call(launch_command(script, argv, num_processes, gpus=gpus))
