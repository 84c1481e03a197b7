"""Resources: validation, the spec field, each site's executor layout (rendered, not
submitted), the request checks ``campaign validate --site`` uses, and the resource
specification each task is submitted with."""

import os
import sys

import pytest
from parsl.executors import HighThroughputExecutor, MPIExecutor, ThreadPoolExecutor
from parsl.launchers import SimpleLauncher
from test_site_configs import ADDRESS, render_scripts

from campaign.placement import PlacementError, task_resource_specification
from campaign.resources import NodeShape, Resources, ResourcesError, problems_on
from campaign.spec import Scale, SpecError
from site_configs import SITES, check_resources, describe_sites, get_config, node_shape

SCALES = ["cg", "aa"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"cores": 0}, "cores must be an integer >= 1; got 0"),
     ({"gpus": -1}, "gpus must be an integer >= 0"),
     ({"ranks": 2.5}, "ranks must be an integer >= 1; got 2.5"),
     ({"nodes": True}, "nodes must be an integer >= 1; got True"),
     ({"memory": 0}, "memory must be a number of GB > 0"),
     ({"memory": float("nan")}, "memory must be a number of GB > 0"),
     ({"priority": "high"}, "priority must be an integer"),
     ({"ranks": 3, "nodes": 2}, "ranks must be a multiple of nodes; got ranks=3, nodes=2")],
)
def test_bad_requests_are_one_line_errors(fields, message):
    with pytest.raises(ResourcesError, match=message) as info:
        Resources(**fields)
    assert "\n" not in str(info.value)
    with pytest.raises(SpecError, match="invalid Scale: resources: " + message):
        Scale("aa", app=print, resources=fields)


def test_scale_resources_accepts_resources_a_dict_or_nothing():
    assert Scale("aa", app=print).resources == Resources()
    assert Scale("aa", app=print, resources=None).resources == Resources()
    assert Scale("aa", app=print, resources={"cores": 4}).resources == Resources(cores=4)
    mpi = Scale("aa", app=print, resources=Resources(ranks=8, nodes=2, cores=4))
    assert mpi.resources.mpi and mpi.resources.ranks_per_node == 4
    assert mpi.resources.total_cores == 32
    assert mpi.resources.get("cores", 1) == 4 and mpi.resources.get("gpus", 0) == 0
    with pytest.raises(SpecError, match="unknown field 'core'; fields: cores, gpus"):
        Scale("aa", app=print, resources={"core": 4})


def test_problems_name_what_was_asked_and_what_the_node_has():
    node = NodeShape(cores=64, gpus=4, memory=256, nodes=2, gpu_kind="A100")
    assert problems_on(Resources(cores=64, gpus=4, memory=256, ranks=2, nodes=2), node) == []
    assert problems_on(Resources(gpus=8), node) == [
        "8 A100s per task on one node; the node has 4"]
    assert problems_on(Resources(ranks=8, cores=16), node) == [
        "8 ranks x 16 cores per node; the node has 64 cores"]
    assert problems_on(Resources(memory=300), node) == ["300 GB per node; the node has 256 GB"]
    assert problems_on(Resources(ranks=3, nodes=3), node) == [
        "3 nodes per task; a block has 2 (raise nodes_per_block)"]
    assert problems_on(Resources(ranks=2), NodeShape(cores=8, mpi=False)) == [
        "an MPI task (2 ranks); this site runs no MPI tasks"]


def test_every_site_has_a_node_shape_shown_by_describe_sites():
    described = {entry["name"]: entry["node"] for entry in describe_sites()}
    assert set(described) == set(SITES)
    assert described["perlmutter"] == "64 cores, 4 A100, 256 GB, 1 node per block"
    assert described["frontier"] == "56 cores, 8 GCD, 512 GB, 1 node per block"
    assert described["polaris"] == "32 cores, 4 A100, 512 GB, 1 node per block"
    assert described["aurora"] == "104 cores, 12 GPU tile, 1024 GB, 1 node per block"
    assert node_shape("perlmutter", node_type="cpu").describe() == (
        "128 cores, 0 A100, 512 GB, 1 node per block")
    assert node_shape("slurm", cores_per_node=32, gpus_per_node=2, nodes_per_block=4,
                      overrides={"sim-aa": {"gpus_per_node": 0}}, label="sim-aa").gpus == 0
    assert "no MPI" in node_shape("lsf").describe()


def test_check_resources_refuses_what_a_site_cannot_meet():
    scales = [Scale("cg", app=print, resources=Resources(cores=16)),
              Scale("aa", app=print, resources=Resources(gpus=8))]
    assert check_resources("polaris", scales[:1]) == []
    [problem] = check_resources("perlmutter", scales)
    assert problem.startswith("scale 'aa' asks for gpus=8: 8 A100s per task on one node; "
                              "the node has 4 (perlmutter node: 64 cores, 4 A100")
    assert check_resources("frontier", scales) == []  # 8 GCDs per node
    assert check_resources("perlmutter", {"cg": {"ranks": 4, "nodes": 2}}) == [
        "scale 'cg' asks for ranks=4, nodes=2: 2 nodes per task; a block has 1 (raise "
        "nodes_per_block) (perlmutter node: 64 cores, 4 A100, 256 GB, 1 node per block)"]
    assert check_resources("perlmutter", {"cg": {"ranks": 4, "nodes": 2}},
                           nodes_per_block=2) == []
    assert check_resources("threads", {"cg": {"ranks": 2}})[0].endswith(
        "this site runs no MPI tasks ({} node: {} cores, 0 GPU, 1 node per block, no MPI)"
        .format("threads", os.cpu_count()))
    [bad] = check_resources("perlmutter", {"cg": {}}, node_type="tpu")
    assert "node_type='tpu'" in bad


def test_a_request_that_does_not_fit_is_refused_when_building_the_config(tmp_path):
    with pytest.raises(ValueError, match=r"sim-aa: gpus=8 cannot run on this site's node"):
        get_config("perlmutter", scales=SCALES, run_dir=str(tmp_path), address=ADDRESS,
                   resources={"aa": Resources(gpus=8)})
    with pytest.raises(ValueError, match="resources: no scale 'md'"):
        get_config("local", scales=SCALES, run_dir=str(tmp_path), resources={"md": {}})


def launch_command(executor, tmp_path):
    """The worker pool command Parsl would start in each block (Parsl's own formatting)."""
    executor.run_dir = str(tmp_path)
    executor.worker_port = 54001
    executor.logconf_path = str(tmp_path / "logconf")
    executor.initialize_scaling()
    return executor.launch_cmd


# site -> (params, resources of aa, workers per node, accelerators, per-task launcher line)
SINGLE_NODE_LAYOUTS = {
    "perlmutter": ({}, Resources(cores=16, gpus=2), 2, ["0,1", "2,3"], "-c 32.0"),
    "frontier": ({}, Resources(cores=7, gpus=1), 8, [str(i) for i in range(8)], "-c 7.0"),
    "polaris": ({}, Resources(cores=8, gpus=1), 4, ["0", "1", "2", "3"], "-c 16.0"),
    "aurora": ({}, Resources(cores=8, gpus=2), 6,
               [f"{g}.0,{g}.1" for g in range(6)], "-c 16.0"),
    "slurm": ({"cores_per_node": 32}, Resources(cores=8), 4, [], "-c 8.0"),
    "pbs": ({"cpus_per_node": 32, "gpus_per_node": 4}, Resources(cores=4, gpus=4), 1,
            ["0,1,2,3"], "-c 4.0"),
    "lsf": ({"cores_per_node": 42}, Resources(cores=7, memory=16), 6, [], "-m 16"),
}


@pytest.mark.parametrize("site", sorted(SINGLE_NODE_LAYOUTS))
def test_sites_map_cores_and_gpus_to_workers_and_accelerators(site, tmp_path):
    params, need, workers, accelerators, line = SINGLE_NODE_LAYOUTS[site]
    config = get_config(site, scales=SCALES, run_dir=str(tmp_path), address=ADDRESS,
                        resources={"aa": need}, **params)
    executor = config.executors[1]
    assert type(executor) is HighThroughputExecutor
    assert executor.workers_per_node == workers
    assert executor.available_accelerators == accelerators
    command = launch_command(executor, tmp_path)
    assert line in command and "--enable_mpi_mode" not in command
    assert " ".join(accelerators) in command


# site -> (params, MPI launcher, lines of the batch script, per-task launcher options)
MPI_LAYOUTS = {
    "perlmutter": ({"nodes_per_block": 4}, "srun", ["#SBATCH --nodes=4"],
                   "--cpus-per-task=8 --gpus-per-task=1"),
    "frontier": ({"nodes_per_block": 4}, "srun", ["#SBATCH --nodes=4"],
                 "--cpus-per-task=8 --gpus-per-task=1"),
    "slurm": ({"nodes_per_block": 4, "cores_per_node": 64, "gpus_per_node": 4}, "srun",
              ["#SBATCH --nodes=4"], "--cpus-per-task=8 --gpus-per-task=1"),
    "polaris": ({"nodes_per_block": 4}, "mpiexec", ["#PBS -l select=4:ncpus=64:ngpus=4"],
                "--depth=8 --cpu-bind=depth"),
    "aurora": ({"nodes_per_block": 4}, "mpiexec", ["#PBS -l select=4:ncpus=208"],
               "--depth=8 --cpu-bind=depth"),
    "pbs": ({"nodes_per_block": 4, "cpus_per_node": 64, "gpus_per_node": 4}, "mpiexec",
            ["#PBS -l select=4:ncpus=64"], "--depth=8 --cpu-bind=depth"),
}


@pytest.mark.parametrize("site", sorted(MPI_LAYOUTS))
def test_mpi_scales_get_mpi_mode_and_a_launcher_prefix(site, tmp_path, monkeypatch):
    params, launcher, lines, options = MPI_LAYOUTS[site]
    need = Resources(ranks=8, nodes=2, cores=8, gpus=4)
    config = get_config(site, scales=SCALES, run_dir=str(tmp_path / "runinfo"),
                        address=ADDRESS, resources={"aa": need}, **params)
    cg, aa, train = config.executors
    assert isinstance(aa, MPIExecutor) and aa.enable_mpi_mode
    assert aa.mpi_launcher == launcher
    assert aa.max_workers_per_block == 2  # 4 nodes a block, 2 a task
    assert isinstance(aa.provider.launcher, SimpleLauncher)  # one pool on the first node
    assert not isinstance(cg, MPIExecutor) and not isinstance(train, MPIExecutor)
    command = launch_command(aa, tmp_path)
    assert command.startswith("python3 -m site_configs.mpi_worker_pool ")
    assert "--enable_mpi_mode" in command
    assert f"--mpi-launcher={launcher}" in aa.launch_cmd
    scripts = render_scripts(config, tmp_path, monkeypatch)
    script = scripts["sim-aa"][0]
    for line in lines:
        assert line in script, script
    bin_dir = os.path.dirname(sys.executable)
    # SimpleLauncher: the pool command itself, not under srun/mpiexec
    pool_line = next(row for row in script.splitlines() if "process_worker_pool.py" in row)
    assert not pool_line.lstrip().startswith(("srun", "mpiexec")), pool_line
    assert f"export PATH={bin_dir}:" in script
    assert "srun" in scripts["sim-cg"][0] or "mpiexec" in scripts["sim-cg"][0]
    spec = task_resource_specification("aa", need, aa, priority=1)
    assert spec == {"priority": 1, "num_nodes": 2, "ranks_per_node": 4, "num_ranks": 8,
                    "launcher_options": options}
    aa.validate_resource_spec(dict(spec))  # Parsl's own check, priority included


def test_lsf_and_threads_refuse_mpi_tasks(tmp_path):
    with pytest.raises(ValueError, match="this site runs no MPI tasks"):
        get_config("lsf", scales=SCALES, run_dir=str(tmp_path), address=ADDRESS,
                   resources={"aa": Resources(ranks=2)})
    with pytest.raises(ValueError, match="this site runs no MPI tasks"):
        get_config("threads", scales=SCALES, run_dir=str(tmp_path),
                   resources={"aa": Resources(ranks=2)})


def test_local_mpi_scale_gets_core_slots(tmp_path):
    config = get_config("local", scales=SCALES, run_dir=str(tmp_path), mpi_slots=4,
                        resources={"aa": Resources(ranks=2)})
    cg, aa, _ = config.executors
    assert type(cg) is HighThroughputExecutor
    assert isinstance(aa, MPIExecutor) and aa.max_workers_per_block == 4
    assert aa.address == "127.0.0.1" and aa.encrypted
    assert "PBS_NODEFILE" in aa.provider.worker_init and "seq 4" in aa.provider.worker_init
    spec = task_resource_specification("aa", Resources(ranks=2), aa, priority=1)
    assert spec == {"priority": 1, "num_nodes": 2, "ranks_per_node": 1, "num_ranks": 2}
    # a non-MPI scale sharing an MPI executor is a one-rank task (Parsl's MPI mode needs
    # a node count for every task)
    assert task_resource_specification("cg", Resources(), aa, priority=2) == {
        "priority": 2, "num_nodes": 1, "ranks_per_node": 1, "num_ranks": 1}
    with pytest.raises(ValueError, match="2 ranks x 2 cores per node; the node has 2 cores"):
        get_config("local", scales=SCALES, run_dir=str(tmp_path), mpi_slots=2,
                   resources={"aa": Resources(ranks=2, cores=2)})


def test_local_accelerators_are_grouped_per_task(tmp_path):
    config = get_config("local", scales=SCALES, run_dir=str(tmp_path), workers_per_scale=4,
                        accelerators=["0", "1", "2", "3"], resources={"aa": {"gpus": 2}})
    cg, aa, train = config.executors
    assert cg.available_accelerators == ["0", "1", "2", "3"]
    assert aa.available_accelerators == ["0,1", "2,3"] and aa.workers_per_node == 2
    assert train.available_accelerators == []


def test_placement_refuses_mpi_where_the_executor_cannot(tmp_path):
    need = Resources(ranks=2, priority=7)
    plain = get_config("local", scales=SCALES, run_dir=str(tmp_path)).executors[1]
    with pytest.raises(PlacementError, match="scale 'aa' asks for 2 MPI ranks but executor "
                                             "'sim-aa' is not in MPI mode"):
        task_resource_specification("aa", need, plain, priority=1)
    with pytest.raises(PlacementError, match="runs no MPI tasks"):
        task_resource_specification("aa", need, ThreadPoolExecutor(label="x"), priority=1)
    assert task_resource_specification("aa", Resources(priority=7), plain, priority=1) == {
        "priority": 7}
    assert task_resource_specification("aa", Resources(), ThreadPoolExecutor(), 1) == {}
