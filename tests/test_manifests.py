"""The production manifests in cluster/ hold to what the code and the installed Ray need. Offline, no cluster.

``cluster/cluster.yaml`` goes through what ``ray up`` does before it contacts AWS: ``prepare_config``
(merge with Ray's AWS defaults) and ``validate_config`` (Ray's JSON schema, ``ray-schema.json``); resource
autodetection, which calls AWS, is left out. ``cluster/rayjob.yaml`` has no schema offline (the KubeRay CRD
ships with the operator, not with any package installed here), so the field checks below are its contract:
Ray versions and images equal to the installed Ray, GPUs where training runs, one shared path for the
checkout and ``ray.storage_path``, and install pins equal to the Makefile's.
"""

from __future__ import annotations

import copy
import re
import shlex
import subprocess
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster" / "cluster.yaml"
RAYJOB_YAML = REPO / "cluster" / "rayjob.yaml"


def cluster_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def prepared(config: dict) -> dict:
    """``config`` as ``ray up`` sees it before talking to the cloud: merged with defaults and schema-checked."""
    config = prepare_config(copy.deepcopy(config))
    validate_config(config)
    return config


def makefile_pins() -> list[str]:
    """The ``name==version`` requirements ``make install`` installs (torch, torchvision, the --no-deps extras)."""
    text = (REPO / "Makefile").read_text()
    pins = re.findall(r"\b[\w.-]+==[\w.+-]+", text)
    assert len(pins) >= 3, f"expected torch, torchvision and the --no-deps pins in the Makefile, found {pins}"
    return pins


def num_workers() -> int:
    """GPU workers the default params need: ray.num_workers, or with auto (one per GPU the cluster has) one."""
    value = yaml.safe_load((REPO / "params.yaml").read_text())["ray"]["num_workers"]
    return 1 if value == "auto" else value


# Cluster launcher ----------------------------------------------------------------------------------------


def test_cluster_config_passes_rays_schema():
    config = prepared(cluster_config())
    assert config["provider"]["type"] == "aws"
    assert config["head_node_type"] in config["available_node_types"]


@pytest.mark.parametrize(
    "breakage",
    [
        {"unknown_top_level_key": 1},  # the schema allows no extra keys
        {"max_workers": "four"},  # wrong type
    ],
    ids=["unknown-key", "wrong-type"],
)
def test_cluster_schema_check_rejects_a_broken_copy(breakage):
    with pytest.raises(jsonschema.ValidationError):
        prepared({**cluster_config(), **breakage})


def test_cluster_schema_check_rejects_fractional_gpus():
    config = cluster_config()
    config["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0.5
    with pytest.raises(jsonschema.ValidationError):
        prepared(config)


def test_cluster_pins_the_installed_ray():
    commands = " ".join(cluster_config()["setup_commands"])
    pinned = re.findall(r"ray\[[\w,]+\]==([\w.]+)", commands)
    assert pinned == [ray.__version__]


def test_cluster_installs_what_the_makefile_installs():
    commands = " ".join(cluster_config()["setup_commands"])
    missing = [pin for pin in makefile_pins() if pin not in commands]
    assert not missing, f"cluster/cluster.yaml setup_commands lack the Makefile's pins {missing}"


def test_cluster_gpus_only_on_workers_and_enough_for_training():
    config = prepared(cluster_config())
    types = config["available_node_types"]
    head = types.pop(config["head_node_type"])
    assert head["resources"].get("CPU") == 0 and not head["resources"].get("GPU")
    gpu_types = {name: t for name, t in types.items() if t["resources"].get("GPU", 0) >= 1}
    assert gpu_types, "no worker node type offers a GPU"
    most_gpus = sum(t["resources"]["GPU"] * t["max_workers"] for t in gpu_types.values())
    assert min(most_gpus, config["max_workers"]) >= num_workers()


# KubeRay RayJob ------------------------------------------------------------------------------------------


def rayjob_documents() -> dict[str, dict]:
    documents = [d for d in yaml.safe_load_all(RAYJOB_YAML.read_text()) if d]
    return {d["kind"]: d for d in documents}


def rayjob() -> dict:
    return rayjob_documents()["RayJob"]


def pod_specs(job: dict) -> dict[str, dict]:
    """Pod spec per group: "head" and each worker group's name."""
    cluster = job["spec"]["rayClusterSpec"]
    specs = {"head": cluster["headGroupSpec"]["template"]["spec"]}
    specs.update({group["groupName"]: group["template"]["spec"] for group in cluster["workerGroupSpecs"]})
    return specs


def entrypoint_script(job: dict) -> str:
    """The shell script the entrypoint runs: ``bash -c '<script>'``, split as the submitter's shell would."""
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["bash", "-c"] and len(argv) == 3, argv
    return argv[2]


def test_rayjob_kind_and_version():
    job = rayjob()
    assert job["apiVersion"] == "ray.io/v1"
    assert job["spec"]["rayClusterSpec"]["rayVersion"] == ray.__version__


def test_rayjob_entrypoint_fetches_and_runs_the_dag():
    script = entrypoint_script(rayjob())
    assert subprocess.run(["bash", "-n", "-c", script], capture_output=True).returncode == 0
    assert script.index("git clone") < script.index("dvc pull") < script.index("dvc exp run")
    assert "ray.address" not in script and "-S ray.use_gpu=true" in script  # a job's stages join its cluster
    assert "dvc exp push origin" in script
    assert '"$REPO_URL"' in script  # from the secret, not a host written here


def test_rayjob_images_match_the_installed_ray():
    images = {name: [c["image"] for c in spec["containers"]] for name, spec in pod_specs(rayjob()).items()}
    for name, tags in images.items():
        for tag in tags:
            assert re.fullmatch(rf"rayproject/ray:{re.escape(ray.__version__)}(-py3\d+)?(-gpu|-cu\d+)?", tag), (
                f"{name}: image {tag!r} is not rayproject/ray:{ray.__version__}[-pyXY][-gpu]"
            )


def test_rayjob_head_runs_no_training():
    head = rayjob()["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert head["rayStartParams"]["num-cpus"] == "0"


def test_rayjob_gpu_workers_cover_ray_num_workers():
    groups = rayjob()["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    gpu_workers = 0
    for group in groups:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        resources = group["template"]["spec"]["containers"][0]["resources"]
        gpus = min(
            int(resources["limits"].get("nvidia.com/gpu", 0)), int(resources["requests"].get("nvidia.com/gpu", 0))
        )
        gpu_workers += group["replicas"] if gpus >= 1 else 0
    assert gpu_workers >= num_workers()


def test_rayjob_shares_one_volume_for_checkout_and_storage_path():
    documents = rayjob_documents()
    job = documents["RayJob"]
    mounts = set()
    for spec in pod_specs(job).values():
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v
        }
        for container in spec["containers"]:
            mounts |= {(claims[m["name"]], m["mountPath"]) for m in container["volumeMounts"] if m["name"] in claims}
    assert len(mounts) == 1, f"head and workers must mount one claim at one path, found {sorted(mounts)}"
    ((claim, mount_path),) = mounts
    pvc = documents["PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == claim and pvc["spec"]["accessModes"] == ["ReadWriteMany"]

    script = entrypoint_script(job)
    (storage_path,) = re.findall(r"-S ray\.storage_path=(\S+)", script)
    (checkout,) = re.findall(r"git clone .* (/\S+);", script)
    for path in storage_path, checkout:  # workers read the prepared data and write DVCLive under the checkout
        assert Path(path).is_relative_to(mount_path), f"{path} is not on the shared volume {mount_path}"
    assert re.search(rf"cd {re.escape(checkout)};", script)


def test_rayjob_every_pod_installs_the_same_code():
    specs = pod_specs(rayjob())
    refs = {
        name: {e["name"]: e.get("value") for e in c.get("env", [])}["GIT_REF"]
        for name, spec in specs.items()
        for c in spec["containers"]
    }
    assert len(set(refs.values())) == 1, f"GIT_REF differs between groups: {refs}"
    for name, spec in specs.items():
        command = " ".join(spec["containers"][0]["command"])
        missing = [pin for pin in makefile_pins() if pin not in command]
        assert not missing, f"{name} does not install the Makefile's pins {missing}"
        assert "git+${REPO_URL}@${GIT_REF}" in command


def test_rayjob_runtime_env_parses():
    runtime_env = yaml.safe_load(rayjob()["spec"]["runtimeEnvYAML"])
    assert runtime_env["env_vars"]["RAY_USAGE_STATS_ENABLED"] == "0"
    assert all(isinstance(v, str) for v in runtime_env["env_vars"].values())  # Ray rejects non-string values
    # RuntimeEnv type-checks the fields it knows but takes any other name as a plugin's: check names here.
    assert set(runtime_env) <= ray.runtime_env.RuntimeEnv.known_fields
    ray.runtime_env.RuntimeEnv(**runtime_env)


def test_rayjob_lifecycle():
    spec = rayjob()["spec"]
    assert spec["submissionMode"] == "K8sJobMode"
    assert spec["shutdownAfterJobFinishes"] is True
    assert 0 < spec["ttlSecondsAfterFinished"] < spec["activeDeadlineSeconds"]
    assert spec["backoffLimit"] >= 0
