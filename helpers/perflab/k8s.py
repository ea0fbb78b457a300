"""Kubernetes manifests for GPU work, built as plain dicts, and checks on them.

The builders return ordinary ``dict``s (what ``kubectl apply -f`` reads once
written as YAML), so a lesson can print, change and test them. ``validate``
checks one against the Kubernetes OpenAPI schema bundled with the
``kubernetes-validate`` package (offline; no cluster needed); ``qos_class`` and
``exclusive_cpu_problems`` check what the schema cannot: the QoS class the API
server will assign and whether the kubelet's static CPU manager can give the
containers whole cores.

Taught in: notebooks/ch03_os_containers/03_07_containers_kubernetes.ipynb
"""

from __future__ import annotations

import copy
import re
from decimal import Decimal, InvalidOperation
from typing import Any

K8S_VERSION = "1.33"  # the Kubernetes minor version whose schema ``validate`` uses by default
GPU_RESOURCE = "nvidia.com/gpu"  # what the NVIDIA device plugin advertises for a whole GPU
SHM_VOLUME = "dshm"
_LABELS = {"app.kubernetes.io/part-of": "perflab"}
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1), "k": Decimal(10**3),
            "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15),
            "E": Decimal(10**18)}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


class ManifestError(ValueError):
    """A manifest that the Kubernetes schema (or a quantity parser) rejects."""


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes resource quantity as a number: "500m" -> 0.5, "64Gi" -> 68719476736, 2 -> 2.

    Example:
        quantity("1500m") == quantity("1.5")   # True: both are one and a half CPUs
    """
    if isinstance(value, bool):
        raise ManifestError(f"Quantity must be a number or a string like '500m' or '64Gi'; got {value!r}.")
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ManifestError(f"Quantity {value!r} is not a Kubernetes quantity (examples: '2', '500m', '64Gi', '1G').")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as err:
        raise ManifestError(f"Quantity {value!r} has no readable number.") from err
    suffix = match.group(2) or ""
    return number * (_BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix])


def _resources(cpus: int | str, memory: str, extra: dict[str, int]) -> dict[str, dict[str, str]]:
    """requests == limits for CPU, memory and every extended resource (Guaranteed QoS)."""
    amounts = {"cpu": str(cpus), "memory": str(memory), **{name: str(n) for name, n in extra.items()}}
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _pod_spec(*, image: str, command: list[str] | None, gpus: int, gpu_resource: str, cpus: int | str,
              memory: str, shm: str | None, env: dict[str, str] | None, node_selector: dict[str, str] | None,
              host_network: bool, sysctls: dict[str, str] | None, working_dir: str | None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image}
    if command:
        container["command"] = list(command)
    if working_dir:
        container["workingDir"] = working_dir
    if env:
        container["env"] = [{"name": k, "value": str(v)} for k, v in env.items()]
    container["resources"] = _resources(cpus, memory, {gpu_resource: gpus} if gpus else {})
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if shm:
        # A memory-backed emptyDir at /dev/shm replaces the runtime's small default (64 MiB under Docker);
        # its pages count against the container's memory limit.
        container["volumeMounts"] = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}]
        spec["volumes"] = [{"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": shm}}]
    if gpus:
        # GPU nodes are commonly tainted so that only pods that ask for GPUs land there.
        spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if host_network:
        spec["hostNetwork"] = True
        spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    if sysctls:
        spec["securityContext"] = {"sysctls": [{"name": k, "value": str(v)} for k, v in sysctls.items()]}
    return spec


def gpu_pod(name: str, *, image: str, command: list[str] | None = None, gpus: int = 1,
            gpu_resource: str = GPU_RESOURCE, cpus: int | str = 8, memory: str = "64Gi", shm: str | None = "16Gi",
            env: dict[str, str] | None = None, node_selector: dict[str, str] | None = None,
            host_network: bool = False, sysctls: dict[str, str] | None = None,
            working_dir: str | None = None) -> dict[str, Any]:
    """A Pod that asks for GPUs with Guaranteed QoS and a memory-backed /dev/shm.

    CPU and memory requests equal their limits, so the pod is Guaranteed; give
    ``cpus`` as a whole number and a kubelet running the static CPU manager
    gives the container exclusive cores, which the Topology Manager can then
    align with the GPU's NUMA node. ``gpu_resource`` may name a MIG slice
    (e.g. "nvidia.com/mig-1g.10gb" under the device plugin's mixed strategy).

    ``sysctls`` sets namespaced kernel settings for the pod; the API server
    refuses ``net.*`` ones on a pod with ``host_network`` (they would change
    the node's own network settings), and so does this function.

    Example:
        pod = gpu_pod("train", image="nvcr.io/nvidia/pytorch:25.01-py3", cpus=16, memory="128Gi")
    """
    net = [name for name in (sysctls or {}) if name.replace("/", ".").startswith("net.")]
    if host_network and net:
        raise ValueError(f"sysctl {net[0]} may not be set on a pod with host_network=True (Kubernetes refuses it); "
                         "set it on the node instead, or drop host_network.")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(_LABELS)},
        "spec": _pod_spec(image=image, command=command, gpus=gpus, gpu_resource=gpu_resource, cpus=cpus,
                          memory=memory, shm=shm, env=env, node_selector=node_selector,
                          host_network=host_network, sysctls=sysctls, working_dir=working_dir),
    }


def notebook_job(name: str, *, image: str, notebook: str, profile: str = "full", gpus: int = 1,
                 gpu_resource: str = GPU_RESOURCE, cpus: int | str = 8, memory: str = "64Gi",
                 shm: str | None = "16Gi", deadline_s: int = 3600, working_dir: str = "/workspace/perflab",
                 results_dir: str = "/results") -> dict[str, Any]:
    """A batch/v1 Job that executes one notebook headless with ``perflab run`` (papermill).

    The pod is built as ``gpu_pod`` builds one; results and the executed
    notebook go to an emptyDir at ``results_dir`` (swap it for a
    PersistentVolumeClaim to keep them). The Job runs once (no retries) and is
    stopped after ``deadline_s`` seconds.

    Example:
        job = notebook_job("pinned", image="registry.example.com/perflab:0.1.0",
                           notebook="notebooks/ch03_os_containers/03_03_pinned_memory.ipynb")
    """
    command = ["perflab", "run", notebook, "--profile", profile, "--out", results_dir]
    spec = _pod_spec(image=image, command=command, gpus=gpus, gpu_resource=gpu_resource, cpus=cpus, memory=memory,
                     shm=shm, env={"PERFLAB_RESULTS_DIR": results_dir}, node_selector=None, host_network=False,
                     sysctls=None, working_dir=working_dir)
    spec["containers"][0].setdefault("volumeMounts", []).append({"name": "results", "mountPath": results_dir})
    spec.setdefault("volumes", []).append({"name": "results", "emptyDir": {}})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": dict(_LABELS)},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline_s,
            "ttlSecondsAfterFinished": 86400,
            "template": {"metadata": {"labels": dict(_LABELS)}, "spec": spec},
        },
    }


def time_slicing_config(replicas: int, name: str = "nvidia-device-plugin-config") -> dict[str, Any]:
    """A ConfigMap for the NVIDIA device plugin that advertises each GPU ``replicas`` times.

    Time-slicing only lets that many pods be scheduled onto one GPU; their
    kernels then take turns as any processes on one GPU do, with no memory or
    fault isolation between them.
    """
    if replicas < 2:
        raise ValueError(f"`replicas` must be at least 2 to share a GPU; got {replicas}.")
    config = (
        "version: v1\n"
        "sharing:\n"
        "  timeSlicing:\n"
        "    resources:\n"
        f"    - name: {GPU_RESOURCE}\n"
        f"      replicas: {replicas}\n"
    )
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": dict(_LABELS)},
            "data": {"config.yaml": config}}


def kubelet_config(*, reserved_cpus: str = "0-1", topology_policy: str = "single-numa-node",
                   topology_scope: str = "pod") -> dict[str, Any]:
    """The node-side settings that exclusive, NUMA-aligned cores need (a KubeletConfiguration).

    This is the kubelet's own configuration file, not an API object:
    ``validate`` has no schema for it.
    """
    policies = ("none", "best-effort", "restricted", "single-numa-node")
    if topology_policy not in policies:
        raise ValueError(f"`topology_policy` must be one of {', '.join(policies)}; got {topology_policy!r}.")
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cpuManagerPolicy": "static",
        "reservedSystemCPUs": reserved_cpus,
        "topologyManagerPolicy": topology_policy,
        "topologyManagerScope": topology_scope,
    }


def _pod_spec_of(manifest: dict[str, Any]) -> dict[str, Any]:
    kind = manifest.get("kind")
    if kind == "Pod":
        return manifest["spec"]
    if kind in ("Job", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        return manifest["spec"]["template"]["spec"]
    raise ValueError(f"Expected a Pod or an object with a pod template; got kind {kind!r}.")


def _effective(container: dict[str, Any]) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """(requests, limits) of CPU and memory after the API server's defaulting: a missing request
    takes the limit's value."""
    res = container.get("resources") or {}
    limits = {k: quantity(v) for k, v in (res.get("limits") or {}).items() if k in ("cpu", "memory")}
    requests = {k: quantity(v) for k, v in (res.get("requests") or {}).items() if k in ("cpu", "memory")}
    for k, v in limits.items():
        requests.setdefault(k, v)
    return requests, limits


def qos_class(manifest: dict[str, Any]) -> str:
    """The QoS class Kubernetes gives the pod: "Guaranteed", "Burstable" or "BestEffort".

    Guaranteed: every container (init containers too) has CPU and memory
    limits, and its requests equal them. A container that sets only limits
    gets requests equal to its limits, so limits alone are enough.
    BestEffort: no container sets any CPU or memory request or limit.
    Burstable: everything else.
    """
    spec = _pod_spec_of(manifest)
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    effective = [_effective(c) for c in containers]
    if not any(req or lim for req, lim in effective):
        return "BestEffort"
    guaranteed = all(
        set(lim) == {"cpu", "memory"} and all(req.get(k) == lim[k] for k in lim) for req, lim in effective
    )
    return "Guaranteed" if guaranteed else "Burstable"


def exclusive_cpu_problems(manifest: dict[str, Any]) -> list[str]:
    """Why the static CPU manager would NOT give this pod's containers exclusive cores ([] if it would).

    Exclusive cores need a Guaranteed pod and a whole-number CPU request in
    each container that wants them (and a kubelet started with
    ``cpuManagerPolicy: static``, which no manifest can show).
    """
    problems = []
    qos = qos_class(manifest)
    if qos != "Guaranteed":
        problems.append(f"the pod's QoS class is {qos}; exclusive cores need Guaranteed "
                        "(CPU and memory requests equal to limits in every container)")
    for c in _pod_spec_of(manifest).get("containers") or []:
        requests, _ = _effective(c)
        cpu = requests.get("cpu")
        if cpu is None:
            problems.append(f"container {c.get('name')!r} requests no CPU")
        elif cpu != cpu.to_integral_value() or cpu < 1:
            problems.append(f"container {c.get('name')!r} requests {cpu.normalize()} CPUs; "
                            "only a whole number of CPUs gets exclusive cores")
    return problems


def validate(manifest: dict[str, Any], version: str = K8S_VERSION, *, strict: bool = True) -> str:
    """Check ``manifest`` against the Kubernetes schema of ``version``; return the schema version used.

    Uses the schemas bundled with the ``kubernetes-validate`` package, so it
    works offline. ``strict`` also rejects fields the schema does not know
    (a misspelt ``resource:`` instead of ``resources:``, for example). Raises
    ``ManifestError`` naming the field and the problem.

    Example:
        validate(gpu_pod("train", image="pytorch:latest"))   # -> "1.33"
    """
    try:
        import kubernetes_validate
    except ImportError as err:
        raise ImportError("validate() needs the `kubernetes-validate` package: pip install kubernetes-validate") from err

    what = f"{manifest.get('kind', '?')}/{(manifest.get('metadata') or {}).get('name', '?')}"
    try:
        return kubernetes_validate.validate(manifest, version, strict=strict)
    except kubernetes_validate.ValidationError as err:
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.path).lstrip(".") or "(top level)"
        raise ManifestError(f"{what}: {path}: {err.message} (Kubernetes {err.version} schema)") from None
    except kubernetes_validate.SchemaNotFoundError as err:
        raise ManifestError(f"{what}: {err.message}") from None
    except (kubernetes_validate.utils.VersionNotSupportedError, IndexError):  # newer, or older, than it bundles
        raise ManifestError(f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for Kubernetes "
                            f"{version}; choose a version it bundles or upgrade it") from None
    except KeyError as err:  # no apiVersion or kind: the validator cannot even pick a schema
        raise ManifestError(f"{what}: the manifest has no {err.args[0]!r} field") from None


def to_yaml(manifest: dict[str, Any]) -> str:
    """The manifest as YAML, keys in the order they were built (what you would `kubectl apply -f`)."""
    import yaml

    return yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False)


def copy_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """A deep copy, to change a manifest without touching the original."""
    return copy.deepcopy(manifest)
