"""One shared suite for every site config in site_configs.SITES.

Sites that run here are run (``local``, ``threads``; ``slurm`` on a real Slurm in
test_slurm.py); for batch-scheduled sites the suite renders the batch script each executor's
provider would submit, without submitting it, and checks its scheduler directives.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import parsl
import pytest
from parsl.config import Config
from parsl.providers.cluster_provider import ClusterProvider
from typer.testing import CliRunner

from site_configs import (
    SITES,
    SiteFileError,
    UnknownSiteError,
    describe_sites,
    executor_labels,
    get_config,
    node_shape,
)

SCALES = ["coarse", "fine"]
RESULT_TIMEOUT_S = 60  # a hung executor fails the test instead of blocking the run
ADDRESS = "10.11.12.13"  # off the machine, a cluster site needs an address for its workers

# Sites whose real run starts worker processes, and the marks their run test needs.
RUN_MARKS = {"local": [pytest.mark.htex, pytest.mark.slow], "threads": []}
# Batch-scheduled sites: how their submit command names the batch script.
CLUSTER_SITES = {"slurm", "pbs", "lsf", "perlmutter", "frontier", "polaris", "aurora"}
# What the suite passes to every site (cluster sites: an address, as off their machine).
SUITE_PARAMS = {name: ({"address": ADDRESS} if name in CLUSTER_SITES else {}) for name in SITES}


def test_every_site_is_run_or_rendered():
    assert set(RUN_MARKS) | CLUSTER_SITES == set(SITES)
    assert not set(RUN_MARKS) & CLUSTER_SITES


@pytest.fixture(params=sorted(SITES))
def site(request):
    return request.param


@pytest.fixture(params=sorted(CLUSTER_SITES))
def cluster_site(request):
    return request.param


def test_executor_labels():
    assert executor_labels(SCALES) == ["sim-coarse", "sim-fine", "train"]
    assert executor_labels(("cg",)) == ["sim-cg", "train"]


@pytest.mark.parametrize(
    ("scales", "error"),
    [("coarse", TypeError), ([], ValueError), (["a", "a"], ValueError), ([""], ValueError)],
)
def test_executor_labels_rejects_bad_scales(scales, error):
    with pytest.raises(error):
        executor_labels(scales)


def test_site_returns_a_config_with_the_expected_labels(site, tmp_path):
    config = get_config(site, scales=SCALES, run_dir=str(tmp_path), **SUITE_PARAMS[site])
    assert isinstance(config, Config)
    assert [executor.label for executor in config.executors] == executor_labels(SCALES)
    assert config.run_dir == str(tmp_path)
    assert config.usage_tracking == 0


def test_site_returns_a_fresh_config_each_call(site, tmp_path):
    first = SITES[site](scales=SCALES, run_dir=str(tmp_path), **SUITE_PARAMS[site])
    second = SITES[site](scales=SCALES, run_dir=str(tmp_path), **SUITE_PARAMS[site])
    assert first is not second
    assert all(a is not b for a, b in zip(first.executors, second.executors, strict=True))


def test_site_labels_follow_the_scales(site, tmp_path):
    scales = ["continuum", "cg", "aa"]
    config = get_config(site, scales=scales, run_dir=str(tmp_path), **SUITE_PARAMS[site])
    assert [executor.label for executor in config.executors] == executor_labels(scales)


def test_site_rejects_bad_scales(site, tmp_path):
    with pytest.raises(ValueError):
        get_config(site, scales=["a", "a"], run_dir=str(tmp_path), **SUITE_PARAMS[site])


def test_site_rejects_unknown_parameters(site, tmp_path):
    with pytest.raises(TypeError):
        get_config(site, scales=SCALES, run_dir=str(tmp_path), no_such_parameter=1,
                   **SUITE_PARAMS[site])


def test_unknown_site_lists_the_known_sites(tmp_path):
    with pytest.raises(UnknownSiteError) as info:
        get_config("foo", scales=SCALES, run_dir=str(tmp_path))
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "unknown site 'foo'" in message
    assert "known sites: " + ", ".join(sorted(SITES)) in message


def test_site_names_are_known_sites_and_described():
    described = describe_sites()
    assert [entry["name"] for entry in described] == sorted(SITES)
    for entry in described:
        assert entry["description"]
        assert entry["node"] == node_shape(entry["name"]).describe()
        names = [parameter["name"] for parameter in entry["parameters"]]
        assert "scales" not in names and "run_dir" not in names
    cluster = {entry["name"]: entry for entry in described if entry["name"] in CLUSTER_SITES}
    for entry in cluster.values():
        parameters = {parameter["name"]: parameter for parameter in entry["parameters"]}
        # the list: account, queue or partition, nodes, blocks, walltime, env, workers
        for name in ("account", "nodes_per_block", "max_blocks", "walltime", "worker_init",
                     "workers_per_node", "gpus_per_node", "overrides"):
            assert name in parameters, (entry["name"], name)
            assert parameters[name]["help"], (entry["name"], name)
        assert {"partition", "queue", "qos"} & set(parameters)
    assert {p["name"]: p["default"] for p in cluster["polaris"]["parameters"]}["queue"] == "debug"
    assert cluster["perlmutter"]["node"] == "64 cores, 4 A100, 256 GB, 1 node per block"


def test_sites_command_lists_every_site_and_its_parameters():
    from campaign.cli import app

    result = CliRunner().invoke(app, ["sites"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for name in SITES:
        assert name in result.output
    assert "walltime" in result.output and "'01:00:00'" in result.output


def test_local_config_is_loopback_only_and_encrypted(tmp_path):
    config = get_config(
        "local", scales=SCALES, run_dir=str(tmp_path), workers_per_scale=3, train_workers=1
    )
    workers = {executor.label: executor.max_workers_per_node for executor in config.executors}
    assert workers == {"sim-coarse": 3, "sim-fine": 3, "train": 1}
    for executor in config.executors:
        assert executor.address == "127.0.0.1"
        assert executor.loopback_address == "127.0.0.1"
        assert executor.encrypted
        assert executor.cores_per_worker < 1
        assert executor.provider.max_blocks == 1
    assert config.strategy_period <= 0.5


def test_threads_config_sets_max_threads(tmp_path):
    config = get_config("threads", scales=SCALES, run_dir=str(tmp_path), max_threads=3)
    assert all(executor.max_threads == 3 for executor in config.executors)


def test_import_has_no_side_effects():
    # In a fresh interpreter: importing the package loads no DataFlowKernel, starts no
    # thread and leaves the environment alone.
    script = (
        "import os, threading\n"
        "before = dict(os.environ)\n"
        "import parsl, site_configs\n"
        "assert dict(os.environ) == before\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "try:\n"
        "    parsl.dfk()\n"
        "except parsl.errors.NoDataFlowKernelError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('a DataFlowKernel was loaded at import')\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def run_probe_on_every_label(config: Config) -> dict[str, tuple[int, float]]:
    """Load ``config``; on each executor run ``os.getpid`` and ``numpy.sum(arange(10))``.

    The apps are importable callables: HTEX workers import a function by its module name,
    so one defined in this test module (not importable there) would fail to deserialize.
    """
    results = {}
    with parsl.load(config):
        try:
            labels = [executor.label for executor in config.executors]
            futures = {
                label: (
                    parsl.python_app(executors=[label])(os.getpid)(),
                    parsl.python_app(executors=[label])(np.sum)(np.arange(10)),
                )
                for label in labels
            }
            for label, (pid, total) in futures.items():
                results[label] = (
                    pid.result(timeout=RESULT_TIMEOUT_S),
                    float(total.result(timeout=RESULT_TIMEOUT_S)),
                )
        finally:
            parsl.clear()
    return results


@pytest.mark.parametrize(
    "run_site", [pytest.param(name, marks=marks) for name, marks in sorted(RUN_MARKS.items())]
)
def test_site_runs_an_app_on_every_label(run_site, tmp_path, monkeypatch):
    # HTEX finds interchange.py and process_worker_pool.py on PATH (the engine sets it too).
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    config = get_config(run_site, scales=SCALES, run_dir=str(tmp_path / "runinfo"))
    start = time.perf_counter()
    results = run_probe_on_every_label(config)
    elapsed = time.perf_counter() - start
    assert set(results) == set(executor_labels(SCALES))
    assert all(total == 45.0 for _, total in results.values())
    pids = {pid for pid, _ in results.values()}
    if run_site == "threads":
        assert pids == {os.getpid()}
    else:
        assert os.getpid() not in pids  # ran in worker processes
        assert len(pids) == len(results)  # one pool per label
    assert (tmp_path / "runinfo").is_dir()
    assert elapsed < RESULT_TIMEOUT_S


# -- batch-scheduled sites: the script each provider would submit --------------------------

SUBMITTED = {"sbatch": "Submitted batch job 4242\n", "qsub": "4242.pbs01\n",
             "bsub": "Job <4242> is submitted to queue <normal>.\n"}


def render_scripts(config: Config, folder: Path, monkeypatch) -> dict[str, tuple[str, str]]:
    """Each executor's batch script and submit command, made by its provider's own
    ``submit`` with the scheduler's commands faked (nothing reaches a scheduler)."""
    commands: list[str] = []

    def execute_wait(self, cmd, timeout=None):
        commands.append(cmd)
        return 0, SUBMITTED.get(cmd.split()[0], ""), ""

    monkeypatch.setattr(ClusterProvider, "execute_wait", execute_wait)
    rendered = {}
    for executor in config.executors:
        script_dir = folder / executor.label
        script_dir.mkdir()
        executor.provider.script_dir = str(script_dir)
        commands.clear()
        job_id = executor.provider.submit("process_worker_pool.py --probe", tasks_per_node=1,
                                          job_name="probe")
        assert job_id is not None and "4242" in job_id
        [script] = [p for p in script_dir.iterdir() if p.suffix not in (".stdout", ".stderr")]
        rendered[executor.label] = (script.read_text(), commands[-1])
    return rendered


# site -> (params, lines every script has, text in the submit command)
EXPECTED_DIRECTIVES = {
    "slurm": (
        {"account": "acct", "partition": "compute", "qos": "normal", "walltime": "00:30:00",
         "nodes_per_block": 2, "cores_per_node": 16, "gpus_per_node": 2},
        ["#SBATCH --account=acct", "#SBATCH --partition=compute", "#SBATCH --qos=normal",
         "#SBATCH --nodes=2", "#SBATCH --time=30", "#SBATCH --cpus-per-task=16",
         "#SBATCH --gpus-per-node=2", "#SBATCH --exclusive", "srun --ntasks 2",
         "--cpus-per-task=16"],
        "sbatch ",
    ),
    "pbs": (
        {"account": "acct", "queue": "workq", "walltime": "00:30:00", "nodes_per_block": 2,
         "cpus_per_node": 32, "select_options": "ngpus=2", "filesystems": "home:scratch"},
        ["#PBS -l walltime=00:30:00", "#PBS -l select=2:ncpus=32:ngpus=2",
         "#PBS -l filesystems=home:scratch", "mpiexec"],
        "qsub  -q workq -A acct ",
    ),
    "lsf": (
        {"account": "acct", "queue": "batch", "walltime": "00:30:00", "nodes_per_block": 1},
        ["#BSUB -P acct", "#BSUB -q batch", "#BSUB -nnodes 1", "#BSUB -W 30"],
        "bsub ",
    ),
    "perlmutter": (
        {"account": "m1234"},
        ["#SBATCH --account=m1234", "#SBATCH --constraint=gpu", "#SBATCH --qos=regular",
         "#SBATCH --gpus-per-node=4", "#SBATCH --exclusive", "#SBATCH --time=60",
         "--cpus-per-task=128"],
        "sbatch ",
    ),
    "frontier": (
        {"account": "ABC123"},
        ["#SBATCH --account=ABC123", "#SBATCH --partition=batch", "#SBATCH --exclusive",
         "#SBATCH --cpus-per-task=56", "#SBATCH --gpus-per-node=8", "srun"],
        "sbatch ",
    ),
    "polaris": (
        {"account": "MYPROJ"},
        ["#PBS -l select=1:ncpus=64:ngpus=4", "#PBS -l filesystems=home:eagle",
         "#PBS -l walltime=01:00:00", "mpiexec", "--cpu-bind", "--depth=64 --ppn 1"],
        "qsub  -q debug -A MYPROJ ",
    ),
    "aurora": (
        {"account": "MYPROJ", "queue": "prod", "nodes_per_block": 4},
        ["#PBS -l select=4:ncpus=208", "#PBS -l filesystems=home:flare", "mpiexec",
         "--cpu-bind", "--ppn 1"],
        "qsub  -q prod -A MYPROJ ",
    ),
}


def test_every_cluster_site_has_expected_directives():
    assert set(EXPECTED_DIRECTIVES) == CLUSTER_SITES


def test_batch_script_has_the_scheduler_directives(cluster_site, tmp_path, monkeypatch):
    params, lines, command = EXPECTED_DIRECTIVES[cluster_site]
    config = get_config(cluster_site, scales=SCALES, run_dir=str(tmp_path / "runinfo"),
                        address=ADDRESS, **params)
    rendered = render_scripts(config, tmp_path, monkeypatch)
    assert set(rendered) == set(executor_labels(SCALES))
    bin_dir = os.path.dirname(sys.executable)
    for label, (script, submit) in rendered.items():
        for line in lines:
            assert line in script, f"{cluster_site} {label}: {line!r} not in\n{script}"
        assert submit.startswith(command), submit
        assert "process_worker_pool.py --probe" in script
        # the default worker_init puts this environment's bin/ first on PATH
        assert f"export PATH={bin_dir}:" in script


def test_cluster_executors_are_encrypted_and_call_back_to_the_address(cluster_site, tmp_path):
    config = get_config(cluster_site, scales=SCALES, run_dir=str(tmp_path), address=ADDRESS)
    for executor in config.executors:
        assert executor.encrypted
        assert executor.address == ADDRESS
        assert executor.all_addresses == {ADDRESS}
        assert executor.prefetch_capacity == 0


def test_machine_sites_pin_one_worker_per_gpu(tmp_path):
    def accelerators(site, **params):
        config = get_config(site, scales=["aa"], run_dir=str(tmp_path), address=ADDRESS,
                            **params)
        return config.executors[0].available_accelerators

    assert accelerators("perlmutter") == ["0", "1", "2", "3"]
    assert accelerators("perlmutter", node_type="cpu") == []
    assert accelerators("frontier") == [str(i) for i in range(8)]
    assert accelerators("polaris") == ["0", "1", "2", "3"]
    assert accelerators("aurora") == [f"{g}.{t}" for g in range(6) for t in range(2)]
    assert accelerators("aurora", tiles_per_gpu=1) == [str(g) for g in range(6)]


def test_overrides_send_one_scale_to_other_nodes(tmp_path, monkeypatch):
    config = get_config(
        "perlmutter", scales=["cg", "aa"], run_dir=str(tmp_path / "runinfo"), address=ADDRESS,
        account="m1234", overrides={"sim-cg": {"node_type": "cpu", "qos": "debug"}},
    )
    rendered = render_scripts(config, tmp_path, monkeypatch)
    cg, aa, train = (rendered[label][0] for label in ("sim-cg", "sim-aa", "train"))
    assert "#SBATCH --constraint=cpu" in cg and "#SBATCH --qos=debug" in cg
    assert "--gpus-per-node" not in cg and "--cpus-per-task=256" in cg
    for script in (aa, train):
        assert "#SBATCH --constraint=gpu" in script and "#SBATCH --qos=regular" in script


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"sim-nope": {"qos": "debug"}}, "no executor labelled 'sim-nope'"),
     ({"train": {"qos_": "debug"}}, "overrides['train']: unknown setting 'qos_'"),
     ({"train": {"scales": ["x"]}}, "unknown setting 'scales'"),
     ({"train": "debug"}, "must be a table")],
)
def test_bad_overrides_name_the_label_or_key(overrides, message, tmp_path):
    with pytest.raises(ValueError, match=re.escape(message)):
        get_config("slurm", scales=SCALES, run_dir=str(tmp_path), address=ADDRESS,
                   overrides=overrides)


@pytest.mark.parametrize(
    ("site", "params", "message"),
    [("slurm", {"walltime": "1h"}, "walltime must be HH:MM:SS"),
     ("slurm", {"min_blocks": 2, "max_blocks": 1}, "min_blocks <= max_blocks"),
     ("slurm", {"launcher": "aprun"}, "launcher='aprun'"),
     ("slurm", {"workers_per_node": 0}, "workers_per_node must be >= 1"),
     ("pbs", {"launcher": "simple", "launcher_options": "--ppn 1"}, "takes none"),
     ("perlmutter", {"node_type": "tpu"}, "node_type='tpu'"),
     ("aurora", {"tiles_per_gpu": 3}, "tiles_per_gpu"),
     ("slurm", {"strategy_period": 0}, "strategy_period must be > 0")],
)
def test_bad_values_are_named(site, params, message, tmp_path):
    with pytest.raises(ValueError, match=re.escape(message)):
        get_config(site, scales=SCALES, run_dir=str(tmp_path), **{"address": ADDRESS, **params})


def test_a_machine_interface_missing_here_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="interface='hsn0'.*pass address="):
        get_config("frontier", scales=SCALES, run_dir=str(tmp_path))


def test_interface_gives_the_workers_address(tmp_path):
    config = get_config("slurm", scales=SCALES, run_dir=str(tmp_path), interface="lo")
    assert {executor.address for executor in config.executors} == {"127.0.0.1"}


def test_worker_init_given_replaces_the_default(tmp_path, monkeypatch):
    config = get_config("slurm", scales=["x"], run_dir=str(tmp_path / "runinfo"),
                        address=ADDRESS, worker_init="module load conda; conda activate env")
    script, _ = render_scripts(config, tmp_path, monkeypatch)["train"]
    assert "module load conda; conda activate env" in script
    assert "export PATH=" not in script


# -- site files ------------------------------------------------------------------------------

SITE_TOML = """\
site = "polaris"
account = "MYPROJ"
queue = "prod"
nodes_per_block = 10
walltime = "02:00:00"
strategy_period = 2
address = "10.11.12.13"

[overrides.sim-coarse]
gpus_per_node = 0
"""

SITE_YAML = """\
site: slurm
account: acct
partition: gpu
address: 10.11.12.13
overrides:
  train: {gpus_per_node: 1}
"""


def test_site_file_sets_parameters_and_overrides(tmp_path, monkeypatch):
    path = tmp_path / "polaris.toml"
    path.write_text(SITE_TOML)
    config = get_config(str(path), scales=SCALES, run_dir=str(tmp_path / "runinfo"),
                        walltime="03:00:00")  # given parameters win over the file's
    assert config.strategy_period == 2.0
    rendered = render_scripts(config, tmp_path, monkeypatch)
    coarse, fine = rendered["sim-coarse"], rendered["sim-fine"]
    assert fine[1].startswith("qsub  -q prod -A MYPROJ ")
    assert "#PBS -l select=10:ncpus=64:ngpus=4" in fine[0]
    assert "#PBS -l walltime=03:00:00" in fine[0]
    assert "#PBS -l select=10:ncpus=64\n" in coarse[0]


def test_yaml_site_file(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "cluster.yaml"
    path.write_text(SITE_YAML)
    config = get_config(str(path), scales=SCALES, run_dir=str(tmp_path))
    providers = {executor.label: executor.provider for executor in config.executors}
    assert providers["sim-fine"].partition == "gpu"
    assert providers["train"].gpus_per_node == 1 and providers["sim-fine"].gpus_per_node is None


@pytest.mark.parametrize(
    ("text", "message"),
    [('site = "polaris"\nacount = "x"\n', "unknown key 'acount' for site 'polaris'"),
     ('site = "polaris"\nnodes_per_block = "ten"\n', "key 'nodes_per_block' must be int"),
     ('site = "polaris"\nrun_dir = "/tmp"\n', "unknown key 'run_dir'"),
     ('account = "x"\n', "key 'site' must name a known site"),
     ('site = "summit"\n', "key 'site' must name a known site"),
     ('site = "polaris\n', "not valid TOML")],
)
def test_bad_site_file_names_the_file_and_key(text, message, tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(text)
    with pytest.raises(SiteFileError, match=re.escape(message)) as info:
        get_config(str(path), scales=SCALES, run_dir=str(tmp_path))
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_site_file(tmp_path):
    with pytest.raises(SiteFileError, match="cannot read site file"):
        get_config(str(tmp_path / "none.toml"), scales=SCALES, run_dir=str(tmp_path))
