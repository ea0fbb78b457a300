"""Tests of perflab.k8s: the manifests it builds pass the Kubernetes schema, broken ones do not,
and its QoS and CPU-manager rules match Kubernetes' own."""

from decimal import Decimal

import pytest
import yaml

from perflab import k8s

IMAGE = "registry.example.com/perflab:0.1.0"


def container(requests=None, limits=None, name="c"):
    resources = {}
    if requests is not None:
        resources["requests"] = requests
    if limits is not None:
        resources["limits"] = limits
    return {"name": name, "image": IMAGE, "resources": resources}


def pod(*containers, init=()):
    spec = {"containers": list(containers)}
    if init:
        spec["initContainers"] = list(init)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


@pytest.mark.parametrize("text, value", [
    ("500m", Decimal("0.5")), ("2", Decimal(2)), ("1.5", Decimal("1.5")), (4, Decimal(4)),
    ("64Gi", Decimal(64 * 2**30)), ("1G", Decimal(10**9)), ("123Mi", Decimal(123 * 2**20)),
    ("129e6", Decimal(129_000_000)), ("128974848", Decimal(128974848)),
])
def test_quantities(text, value):
    assert k8s.quantity(text) == value


@pytest.mark.parametrize("text", ["", "lots", "2 cores", "1.5.2", True])
def test_bad_quantities_are_refused(text):
    with pytest.raises(k8s.ManifestError):
        k8s.quantity(text)


def test_gpu_pod_passes_the_schema_and_is_guaranteed_with_whole_cores():
    manifest = k8s.gpu_pod("train", image=IMAGE, command=["python", "train.py"], cpus=16, memory="128Gi")
    assert k8s.validate(manifest) == k8s.K8S_VERSION
    assert k8s.qos_class(manifest) == "Guaranteed"
    assert k8s.exclusive_cpu_problems(manifest) == []
    main = manifest["spec"]["containers"][0]
    assert main["resources"]["limits"][k8s.GPU_RESOURCE] == "1"
    assert {"name": k8s.SHM_VOLUME, "mountPath": "/dev/shm"} in main["volumeMounts"]
    assert manifest["spec"]["volumes"][0]["emptyDir"]["medium"] == "Memory"


def test_mig_slice_pod_passes_the_schema():
    manifest = k8s.gpu_pod("infer", image=IMAGE, gpu_resource="nvidia.com/mig-1g.10gb", cpus=2, memory="16Gi")
    k8s.validate(manifest)
    assert manifest["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/mig-1g.10gb"] == "1"


def test_host_network_pod_and_pod_with_a_namespaced_sysctl_pass_the_schema():
    host = k8s.gpu_pod("nccl-host", image=IMAGE, host_network=True)
    k8s.validate(host)
    assert host["spec"]["hostNetwork"] is True
    ports = k8s.gpu_pod("nccl-ports", image=IMAGE, sysctls={"net.ipv4.ip_local_port_range": "50000 51000"})
    k8s.validate(ports)
    assert ports["spec"]["securityContext"]["sysctls"][0]["value"] == "50000 51000"


def test_net_sysctl_with_host_network_is_refused():
    with pytest.raises(ValueError, match="host_network"):
        k8s.gpu_pod("both", image=IMAGE, host_network=True, sysctls={"net.ipv4.ip_local_port_range": "50000 51000"})


def test_notebook_job_passes_the_schema_and_runs_the_notebook():
    notebook = "notebooks/ch03_os_containers/03_03_pinned_memory.ipynb"
    job = k8s.notebook_job("pinned", image=IMAGE, notebook=notebook)
    assert k8s.validate(job) == k8s.K8S_VERSION
    spec = job["spec"]["template"]["spec"]
    command = spec["containers"][0]["command"]
    assert command[:3] == ["perflab", "run", notebook] and "--profile" in command and "full" in command
    assert spec["restartPolicy"] == "Never"
    assert any(v.get("emptyDir", {}).get("medium") == "Memory" for v in spec["volumes"])
    assert k8s.qos_class(job) == "Guaranteed"


def test_time_slicing_config_is_a_valid_configmap_with_readable_config():
    manifest = k8s.time_slicing_config(4)
    k8s.validate(manifest)
    config = yaml.safe_load(manifest["data"]["config.yaml"])
    assert config["sharing"]["timeSlicing"]["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]
    with pytest.raises(ValueError):
        k8s.time_slicing_config(1)


def test_misspelt_field_is_rejected_in_strict_mode():
    manifest = k8s.gpu_pod("typo", image=IMAGE)
    main = manifest["spec"]["containers"][0]
    main["resource"] = main.pop("resources")
    with pytest.raises(k8s.ManifestError, match=r"containers\[0\].*'resource' was unexpected"):
        k8s.validate(manifest)


def test_wrong_types_and_missing_fields_are_rejected():
    no_containers = pod()
    del no_containers["spec"]["containers"]
    with pytest.raises(k8s.ManifestError, match="'containers' is a required property"):
        k8s.validate(no_containers)
    list_cpu = pod(container(limits={"cpu": [1]}))
    with pytest.raises(k8s.ManifestError, match=r"limits\.cpu"):
        k8s.validate(list_cpu)
    with pytest.raises(k8s.ManifestError, match="no 'apiVersion'"):
        k8s.validate({"kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": []}})


def test_objects_without_a_schema_are_reported_not_passed():
    with pytest.raises(k8s.ManifestError, match="KubeletConfiguration"):
        k8s.validate(k8s.kubelet_config())


def test_unknown_kubernetes_version_is_reported():
    with pytest.raises(k8s.ManifestError, match="no schemas for Kubernetes 9.99"):
        k8s.validate(k8s.gpu_pod("a", image=IMAGE), "9.99")
    with pytest.raises(k8s.ManifestError, match="no schemas for Kubernetes 1.20"):
        k8s.validate(k8s.gpu_pod("a", image=IMAGE), "1.20")


def test_copy_is_independent():
    original = k8s.gpu_pod("a", image=IMAGE)
    changed = k8s.copy_of(original)
    changed["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "1"
    assert original["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "8"


# --- QoS: the rules of https://kubernetes.io/docs/concepts/workloads/pods/pod-qos/ ---

def test_limits_alone_give_guaranteed():
    # requests default to limits: the book's "only limits -> Burstable" is wrong
    assert k8s.qos_class(pod(container(limits={"cpu": "4", "memory": "8Gi"}))) == "Guaranteed"


def test_equal_quantities_in_different_units_are_equal():
    assert k8s.qos_class(pod(container(requests={"cpu": "1000m", "memory": "1Gi"},
                                       limits={"cpu": "1", "memory": "1024Mi"}))) == "Guaranteed"


def test_requests_below_limits_give_burstable():
    assert k8s.qos_class(pod(container(requests={"cpu": "2", "memory": "8Gi"},
                                       limits={"cpu": "4", "memory": "8Gi"}))) == "Burstable"


def test_requests_without_limits_give_burstable():
    assert k8s.qos_class(pod(container(requests={"cpu": "2", "memory": "8Gi"}))) == "Burstable"


def test_one_container_without_memory_limit_makes_the_pod_burstable():
    good = container(limits={"cpu": "2", "memory": "8Gi"}, name="a")
    cpu_only = container(limits={"cpu": "2"}, name="b")
    assert k8s.qos_class(pod(good, cpu_only)) == "Burstable"


def test_init_containers_count():
    good = container(limits={"cpu": "2", "memory": "8Gi"})
    bare_init = container(requests={"cpu": "1"}, name="init")
    assert k8s.qos_class(pod(good, init=[bare_init])) == "Burstable"


def test_nothing_set_gives_best_effort_and_gpus_alone_do_not_count():
    assert k8s.qos_class(pod(container())) == "BestEffort"
    assert k8s.qos_class(pod(container(limits={"nvidia.com/gpu": "1"}))) == "BestEffort"


def test_exclusive_cores_need_whole_cpus_and_guaranteed():
    fractional = pod(container(limits={"cpu": "7500m", "memory": "8Gi"}))
    assert k8s.qos_class(fractional) == "Guaranteed"
    assert any("whole number" in p for p in k8s.exclusive_cpu_problems(fractional))
    burstable = pod(container(requests={"cpu": "8", "memory": "4Gi"}, limits={"cpu": "8", "memory": "8Gi"}))
    assert any("Burstable" in p for p in k8s.exclusive_cpu_problems(burstable))
    assert k8s.exclusive_cpu_problems(pod(container(limits={"cpu": "8", "memory": "8Gi"}))) == []


def test_kubelet_config_refuses_unknown_policy():
    assert k8s.kubelet_config()["cpuManagerPolicy"] == "static"
    with pytest.raises(ValueError, match="topology_policy"):
        k8s.kubelet_config(topology_policy="numa-please")


def test_to_yaml_round_trips():
    manifest = k8s.notebook_job("j", image=IMAGE, notebook="nb.ipynb")
    assert yaml.safe_load(k8s.to_yaml(manifest)) == manifest
