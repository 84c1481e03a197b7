"""What every batch-scheduled site shares: per-label settings, the workers' environment and
call-back address, launchers, and one encrypted ``HighThroughputExecutor`` per label.

A cluster site factory gathers its keyword arguments into one settings dict, and
:func:`build_config` gives each executor label (``sim-<scale>``, ``train``) those settings,
updated by ``overrides[label]``, so two scales can go to different node types or queues
with one config. Nothing here runs at import.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from parsl.addresses import address_by_interface
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.launchers import (
    JsrunLauncher,
    MpiExecLauncher,
    MpiRunLauncher,
    SimpleLauncher,
    SingleNodeLauncher,
    SrunLauncher,
)
from parsl.launchers.base import Launcher
from parsl.usage_tracking.levels import DISABLED

from campaign.resources import Resources
from site_configs.labels import executor_labels
from site_configs.layout import label_resources

# Factory arguments that are not per-label settings.
NOT_SETTINGS = ("scales", "run_dir", "overrides", "strategy_period", "resources")
WALLTIME = re.compile(r"^\d+:[0-5]\d:[0-5]\d$")

# The help text of parameters many sites share (``campaign sites`` shows it); a factory's
# own docstring documents only what is particular to it.
PARAMETER_HELP = {
    "account": "allocation charged for the jobs (Slurm --account, PBS -A, LSF -P)",
    "partition": "Slurm partition",
    "queue": "batch queue",
    "qos": "Slurm quality of service",
    "constraint": "Slurm node constraint (e.g. gpu, cpu)",
    "nodes_per_block": "nodes in each batch job (a block)",
    "init_blocks": "blocks submitted when the campaign starts",
    "min_blocks": "blocks kept even when idle",
    "max_blocks": "most blocks at once, per executor",
    "walltime": "wall time of each batch job, HH:MM:SS",
    "cores_per_node": "cores each job asks for per node (None: scheduler's default)",
    "cpus_per_node": "CPUs requested per node (PBS ncpus)",
    "mem_per_node": "memory per node in GB (None: scheduler's default)",
    "workers_per_node": "Parsl workers per node (None: one per GPU if any, else per core)",
    "cores_per_worker": "cores each worker may use; sets workers per node with no GPUs",
    "gpus_per_node": "GPUs per node; one worker is pinned to each",
    "cpu_affinity": "how workers are pinned to cores (Parsl's cpu_affinity)",
    "launcher": "how workers start on the job's nodes: srun, mpiexec, mpirun, jsrun, "
                "simple (one node) or single",
    "launcher_options": "extra arguments to the launcher (srun/mpiexec/mpirun/jsrun)",
    "scheduler_options": "extra lines for the batch script header (e.g. '#SBATCH -C gpu')",
    "select_options": "extra PBS select resources (e.g. 'ngpus=4')",
    "filesystems": "PBS filesystems the job needs (ALCF '-l filesystems=')",
    "exclusive": "ask for whole nodes (Slurm --exclusive)",
    "worker_init": "shell lines run before the workers start (None: put this Python's bin/ "
                   "first on PATH)",
    "interface": "network interface workers reach the campaign through (None: try all)",
    "address": "address workers reach the campaign at (overrides interface)",
    "cmd_timeout": "seconds to wait for the scheduler's submit/status commands",
    "strategy_period": "seconds between Parsl's scaling polls",
    "overrides": "per-label settings, e.g. {'sim-fine': {'node_type': 'gpu'}}",
    "node_type": "node type: gpu or cpu",
    "resources": "scale name -> campaign.resources.Resources (the engine passes the spec's)",
}

LAUNCHERS = ("srun", "mpiexec", "mpirun", "jsrun", "simple", "single")


def default_worker_init() -> str:
    """``export PATH=<this Python's bin>:$PATH``: workers start ``process_worker_pool.py``
    from the environment the campaign runs in (shared file systems make it visible)."""
    return f'export PATH={shlex.quote(os.path.dirname(sys.executable))}:"$PATH"'


def worker_address(interface: str | None, address: str | None) -> str | None:
    """The address workers connect back to: ``address`` if given, else the IPv4 address of
    ``interface``; ``None`` (both unset) lets Parsl's workers probe every address of this host.

    Raises:
        ValueError: ``interface`` has no IPv4 address here (the usual cause: the config is
            built off the machine it is for).
    """
    if address:
        return address
    if interface is None:
        return None
    try:
        return address_by_interface(interface)
    except OSError as error:
        raise ValueError(
            f"interface={interface!r}: no such network interface with an IPv4 address on "
            f"{socket.gethostname()} ({error.strerror or error}); run from the machine's "
            "login node, or pass address=... or interface=None"
        ) from None


def make_launcher(name: str, options: str = "", *, bind_cmd: str = "--bind-to") -> Launcher:
    """A Parsl launcher by name (:data:`LAUNCHERS`); ``options`` go to its command line.

    Raises:
        ValueError: an unknown name, or options for a launcher that takes none.
    """
    if name not in LAUNCHERS:
        raise ValueError(f"launcher={name!r}: expected one of {', '.join(LAUNCHERS)}")
    if name in ("simple", "single"):
        if options:
            raise ValueError(f"launcher_options={options!r}: launcher={name!r} takes none")
        return SimpleLauncher() if name == "simple" else SingleNodeLauncher()
    if name == "mpiexec":
        return MpiExecLauncher(bind_cmd=bind_cmd, overrides=options)
    return {"srun": SrunLauncher, "mpirun": MpiRunLauncher, "jsrun": JsrunLauncher}[name](
        overrides=options
    )


def check_blocks(
    *, nodes_per_block: int, init_blocks: int, min_blocks: int, max_blocks: int, walltime: str
) -> None:
    """Raise ``ValueError`` naming the first bad block setting."""
    if nodes_per_block < 1:
        raise ValueError(f"nodes_per_block must be >= 1; got {nodes_per_block}")
    if not 0 <= min_blocks <= max_blocks or max_blocks < 1:
        raise ValueError(
            f"need 0 <= min_blocks <= max_blocks and max_blocks >= 1; got "
            f"min_blocks={min_blocks}, max_blocks={max_blocks}"
        )
    if not 0 <= init_blocks <= max_blocks:
        raise ValueError(f"init_blocks must be in [0, max_blocks={max_blocks}]; got {init_blocks}")
    if not isinstance(walltime, str) or not WALLTIME.match(walltime):
        raise ValueError(f"walltime must be HH:MM:SS; got {walltime!r}")


def provider_launcher(resources: Resources, name: str, options: str = "", *,
                      bind_cmd: str = "--bind-to") -> Launcher:
    """How a block's worker pool starts: the site's launcher, or, for an MPI task,
    ``SimpleLauncher`` (Parsl's MPI mode runs one pool on the block's first node and the
    task's own launcher spreads its ranks)."""
    if resources.mpi:
        return SimpleLauncher()
    return make_launcher(name, options, bind_cmd=bind_cmd)


def label_settings(
    labels: Sequence[str],
    settings: Mapping[str, Any],
    overrides: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, dict[str, Any]]:
    """``settings`` for each label, updated by ``overrides[label]``.

    Raises:
        ValueError: an override for a label the config does not have, or of a key that is
            not one of ``settings``.
    """
    overrides = dict(overrides or {})
    for label, changes in overrides.items():
        if label not in labels:
            raise ValueError(
                f"overrides: no executor labelled {label!r}; labels: {', '.join(labels)}"
            )
        if not isinstance(changes, Mapping):
            raise ValueError(f"overrides[{label!r}] must be a table of settings; got {changes!r}")
        for key in changes:
            if key not in settings:
                raise ValueError(
                    f"overrides[{label!r}]: unknown setting {key!r}; known: "
                    f"{', '.join(sorted(settings))}"
                )
    return {label: {**settings, **overrides.get(label, {})} for label in labels}


def build_config(
    arguments: Mapping[str, Any],
    make_executor: Callable[..., HighThroughputExecutor],
) -> Config:
    """A Config with ``make_executor(label, **settings)`` for every label.

    Args:
        arguments: the factory's keyword arguments (``scales``, ``run_dir``, ``overrides``,
            ``strategy_period``, ``resources`` (scale name -> Resources) and the per-label
            settings).
        make_executor: builds one executor from a label and its settings.
    """
    labels = executor_labels(arguments["scales"])
    if arguments["strategy_period"] <= 0:
        raise ValueError(f"strategy_period must be > 0; got {arguments['strategy_period']}")
    settings = {key: value for key, value in arguments.items() if key not in NOT_SETTINGS}
    per_label = label_settings(labels, settings, arguments["overrides"])
    resources = label_resources(labels, arguments.get("resources"))
    return Config(
        executors=[make_executor(label, resources=resources[label], **per_label[label])
                   for label in labels],
        run_dir=arguments["run_dir"],
        strategy_period=arguments["strategy_period"],
        usage_tracking=DISABLED,
    )
