"""A site checked without submitting: the Parsl config a campaign would run on, and the
batch script each executor's provider would submit, rendered by the provider's own code.

:func:`render_site` builds the site's config as the engine does (one executor per
``sim-<scale>`` and ``train``), writes it as text, and for each executor over a batch
provider (Slurm, PBS, LSF, ...) runs Parsl's own block launch (``_launch_block``: the
worker command wrapped by the launcher, the scheduler's template filled in and written
to ``<out>/submit_scripts``) with the provider's command runner replaced by one that
records the command (``sbatch <script>``) and runs nothing. Executors started on this
host (``LocalProvider``) or with no provider (threads) have no batch script; their
worker command is shown instead.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     rendering = render_site("threads", ["coarse", "fine"], folder)
    >>> [e.label for e in rendering.executors]
    ['sim-coarse', 'sim-fine', 'train']
    >>> rendering.executors[0].script is None
    True
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campaign.resources import Resources

__all__ = ["ExecutorRendering", "SiteRendering", "render_site"]

logger = logging.getLogger(__name__)

NOT_SUBMITTED = "campaign validate: rendered, not submitted"
LAUNCH_WORDS = ("process_worker_pool", "srun ", "mpiexec", "mpirun", "aprun", "jsrun")
MAX_UNSET = 20  # attributes Parsl sets only when an executor starts, filled for rendering


@dataclass
class ExecutorRendering:
    """One executor: its provider, the batch script written (None without one), the
    commands the provider would have run (e.g. ``sbatch <script>``), and the lines of the
    script (or the worker command) that start the workers."""

    label: str
    provider: str
    script: Path | None = None
    commands: list[str] = field(default_factory=list)
    launch_lines: list[str] = field(default_factory=list)
    directives: list[str] = field(default_factory=list)
    problem: str | None = None


@dataclass
class SiteRendering:
    """The site's config as text (``config_file``) and one rendering per executor."""

    site: str
    out: Path
    config_file: Path
    executors: list[ExecutorRendering]


def render_site(site: str, scales: list[str], out: str | Path,
                params: dict[str, Any] | None = None,
                resources: Mapping[str, Resources | None] | None = None) -> SiteRendering:
    """Render the config of ``site`` for ``scales`` (with ``params``, and each scale's
    ``resources`` mapped to its executor by the site) into ``out``.

    Check the requests first with :func:`site_configs.check_resources`: a request the
    site's node cannot meet makes :func:`site_configs.get_config` raise ``ValueError``.

    Raises what :func:`site_configs.get_config` raises for an unknown site or a bad
    parameter; a provider that fails to render records its ``problem`` instead.
    """
    from site_configs import get_config

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = get_config(site, scales=scales, run_dir=str(out / "parsl"),
                        resources=resources, **(params or {}))
    config_file = out / "parsl-config.txt"
    config_file.write_text(repr(config) + "\n", encoding="utf-8")
    executors = [_render_executor(executor, out / "submit_scripts")
                 for executor in config.executors]
    return SiteRendering(site=site, out=out, config_file=config_file, executors=executors)


def _render_executor(executor: Any, script_dir: Path) -> ExecutorRendering:
    from parsl.providers.cluster_provider import ClusterProvider

    provider = getattr(executor, "provider", None)
    rendering = ExecutorRendering(label=executor.label,
                                  provider=type(provider).__name__ if provider else "none")
    if provider is None or not hasattr(executor, "_get_launch_command"):
        rendering.launch_lines = [f"{type(executor).__name__}: tasks run in the driver's "
                                  "process, no workers to start"]
        return rendering
    try:
        command = _launch_command(executor)
    except Exception as error:  # Parsl internals differ between versions: say so
        rendering.problem = f"cannot compose the worker command: {type(error).__name__}: {error}"
        return rendering
    if not isinstance(provider, ClusterProvider):  # started on this host: no batch script
        wrapped = provider.launcher(command, 1, provider.nodes_per_block)
        rendering.launch_lines = _launch_lines(wrapped.splitlines())
        return rendering
    script_dir.mkdir(parents=True, exist_ok=True)
    provider.script_dir = str(script_dir)
    before = set(script_dir.iterdir())

    def record(cmd: str, timeout: Any = None) -> tuple[int, str, str]:
        rendering.commands.append(cmd)
        return 1, "", NOT_SUBMITTED

    provider.execute_wait = record  # the provider's runner of sbatch/qsub/bsub: runs nothing
    try:
        executor._launch_block("0")
    except Exception as error:  # expected: the fake submission "fails" after rendering
        if NOT_SUBMITTED not in str(error) and not rendering.commands:
            rendering.problem = f"{type(error).__name__}: {error}"
    written = sorted(p for p in set(script_dir.iterdir()) - before
                     if not p.name.endswith((".stdout", ".stderr")))
    if not written:
        rendering.problem = rendering.problem or "the provider wrote no script"
        return rendering
    rendering.script = written[0]
    lines = rendering.script.read_text(encoding="utf-8").splitlines()
    rendering.directives = [line for line in lines
                            if line.startswith("#") and not line.startswith("#!")]
    rendering.launch_lines = _launch_lines(lines)
    return rendering


def _launch_lines(lines: list[str]) -> list[str]:
    """The lines that start workers: the worker pool and the launcher's own commands."""
    return [line.strip() for line in lines if any(word in line for word in LAUNCH_WORDS)]


def _launch_command(executor: Any) -> str:
    """The worker command of block 0, composed by Parsl (``initialize_scaling``); the
    attributes Parsl sets only when the executor starts (ports, log config) read
    ``<name>``."""
    for _ in range(MAX_UNSET):
        try:
            executor.initialize_scaling()
            return executor._get_launch_command("0")
        except AttributeError as error:
            name = getattr(error, "name", None)
            if not name or hasattr(executor, name):
                raise
            setattr(executor, name, f"<{name.strip('_')}>")
    raise RuntimeError("too many attributes unset before the executor starts")
