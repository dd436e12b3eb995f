"""Checks on rendered Kubernetes objects. Each returns a list of problems (empty: fine), so the tests can assert
both that the real manifests pass and that a broken copy is caught."""

from __future__ import annotations

import re
from typing import Callable, Iterable

from .kustomize_lite import containers_of, object_id, split_image

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
GPU = "nvidia.com/gpu"


def where(obj: dict) -> str:
    kind, namespace, name = object_id(obj)
    return f"{kind} {namespace + '/' if namespace else ''}{name}"


def workloads(objects: Iterable[dict]) -> list[dict]:
    return [o for o in objects if o.get("kind") in WORKLOAD_KINDS]


def pod_spec(obj: dict) -> dict:
    return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}


def pod_labels(obj: dict) -> dict:
    return (((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def container_command(container: dict) -> list[str]:
    return [str(x) for x in (container.get("command") or []) + (container.get("args") or [])]


# ---------------------------------------------------------------- structure

def check_object_shape(objects: list[dict]) -> list[str]:
    problems = []
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict):
            problems.append(f"object #{i} is not a mapping")
            continue
        for field in ("apiVersion", "kind"):
            if not obj.get(field):
                problems.append(f"object #{i} ({where(obj)}) has no {field}")
        if not (obj.get("metadata") or {}).get("name"):
            problems.append(f"object #{i} ({obj.get('kind')}) has no metadata.name")
    return problems


def check_namespace(objects: list[dict], namespace: str | None) -> list[str]:
    """Every object in ``namespace`` (None: the base, where none may carry one)."""
    problems = []
    for obj in objects:
        got = (obj.get("metadata") or {}).get("namespace")
        if got != namespace:
            problems.append(f"{where(obj)}: namespace {got!r}, expected {namespace!r}")
    return problems


def check_workload_selectors(objects: list[dict]) -> list[str]:
    """Each workload's selector matches its pod template; a Job has none (the API server makes a unique one)."""
    problems = []
    for obj in workloads(objects):
        spec = obj.get("spec") or {}
        match = (spec.get("selector") or {}).get("matchLabels") or {}
        labels = pod_labels(obj)
        if obj.get("kind") == "Job" and not spec.get("manualSelector"):
            if spec.get("selector"):
                problems.append(f"{where(obj)}: a selector without manualSelector (the API server rejects it)")
            continue
        if not match:
            problems.append(f"{where(obj)}: empty selector.matchLabels")
        for key, value in match.items():
            if labels.get(key) != value:
                problems.append(f"{where(obj)}: selector {key}={value} is not a label of its pod template")
    return problems


def _container_ports(obj: dict) -> list[dict]:
    return [p for c in (pod_spec(obj).get("containers") or []) for p in (c.get("ports") or [])]


def resolve_port(obj: dict, port) -> dict | None:
    """The container port (by name or number) of a workload that ``port`` names, or None."""
    for p in _container_ports(obj):
        if (isinstance(port, str) and not port.isdigit() and p.get("name") == port) or (
                str(port).isdigit() and int(p.get("containerPort", -1)) == int(port)):
            return p
    return None


def check_services(objects: list[dict]) -> list[str]:
    """Each Service selects the pods of exactly one workload in its namespace and targets a port they open."""
    problems = []
    for svc in (o for o in objects if o.get("kind") == "Service"):
        namespace = (svc.get("metadata") or {}).get("namespace")
        selector = (svc.get("spec") or {}).get("selector") or {}
        if not selector:
            problems.append(f"{where(svc)}: no selector")
            continue
        hits = [w for w in workloads(objects) if (w.get("metadata") or {}).get("namespace") == namespace
                and all(pod_labels(w).get(k) == v for k, v in selector.items())]
        if len(hits) != 1:
            problems.append(f"{where(svc)}: selector {selector} matches {len(hits)} workloads "
                            f"({', '.join(where(h) for h in hits) or 'none'}), expected exactly one")
            continue
        for port in (svc.get("spec") or {}).get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            if resolve_port(hits[0], target) is None:
                problems.append(f"{where(svc)}: port {port.get('name') or port.get('port')} targets {target!r}, "
                                f"which no container of {where(hits[0])} opens")
    return problems


# ---------------------------------------------------------------- the ad service

def serve_port(container: dict, parse_fitad: Callable[[list[str]], dict]) -> int | None:
    """The port ``fitad serve`` opens in this container (its command parsed by the real CLI), or None if the
    container does not run ``fitad serve``."""
    argv = container_command(container)
    if argv[:2] != ["fitad", "serve"]:
        return None
    return int(parse_fitad(argv[1:])["port"])


def check_ad_service_probes(objects: list[dict], health_routes: dict[str, str],
                            parse_fitad: Callable[[list[str]], dict]) -> list[str]:
    """Probes of every `fitad serve` container: HTTP GETs of BentoML health routes (readiness on the readiness
    route, liveness on the liveness one), on the container port `fitad serve --port` opens."""
    problems, found = [], 0
    for obj in workloads(objects):
        for container in pod_spec(obj).get("containers") or []:
            port = serve_port(container, parse_fitad)
            if port is None:
                continue
            found += 1
            name = f"{where(obj)} container {container.get('name')}"
            if not any(int(p.get("containerPort", -1)) == port for p in container.get("ports") or []):
                problems.append(f"{name}: `fitad serve --port {port}` but no containerPort {port}")
            for probe_name, wanted in (("readinessProbe", "ready"), ("livenessProbe", "live"),
                                       ("startupProbe", None)):
                probe = container.get(probe_name)
                if not probe:
                    problems.append(f"{name}: no {probe_name}")
                    continue
                get = probe.get("httpGet") or {}
                path = get.get("path")
                if path not in health_routes:
                    problems.append(f"{name}: {probe_name} path {path!r} is not a BentoML health route "
                                    f"{sorted(health_routes)}")
                elif wanted and health_routes[path] != wanted:
                    problems.append(f"{name}: {probe_name} path {path} is BentoML's {health_routes[path]} route")
                target = resolve_port(obj, get.get("port"))
                if target is None or int(target["containerPort"]) != port:
                    problems.append(f"{name}: {probe_name} port {get.get('port')!r} is not the port `fitad serve` "
                                    f"opens ({port})")
    if not found:
        problems.append("no container runs `fitad serve`")
    return problems


def ad_service_containers(objects: list[dict], parse_fitad) -> list[tuple[dict, dict]]:
    return [(obj, c) for obj in workloads(objects) for c in pod_spec(obj).get("containers") or []
            if serve_port(c, parse_fitad) is not None]


def check_gpu(objects: list[dict], parse_fitad, expect_gpu: bool) -> list[str]:
    """prod: the ad service asks for a GPU, tolerates the GPU taint and selects GPU nodes; dev: nothing asks for one."""
    problems = []
    pairs = ad_service_containers(objects, parse_fitad)
    if not pairs:
        return ["no container runs `fitad serve`"]
    for obj, container in pairs:
        name = f"{where(obj)} container {container.get('name')}"
        limits = (container.get("resources") or {}).get("limits") or {}
        spec = pod_spec(obj)
        tolerated = any(t.get("key") == GPU and t.get("effect") == "NoSchedule"
                        and t.get("operator", "Equal") in ("Exists", "Equal") for t in spec.get("tolerations") or [])
        selects = str((spec.get("nodeSelector") or {}).get(f"{GPU}.present")).lower() == "true"
        if expect_gpu:
            if int(limits.get(GPU, 0)) < 1:
                problems.append(f"{name}: no {GPU} limit")
            if not tolerated:
                problems.append(f"{where(obj)}: no toleration for the {GPU} NoSchedule taint")
            if not selects:
                problems.append(f"{where(obj)}: no nodeSelector {GPU}.present=true")
            if not str(container.get("image", "")).endswith("-cuda"):
                problems.append(f"{name}: image {container.get('image')} is not the CUDA variant")
        else:
            if tolerated or selects:
                problems.append(f"{where(obj)}: GPU toleration or node selector in a CPU overlay")
            if str(container.get("image", "")).endswith("-cuda"):
                problems.append(f"{name}: the CUDA image in a CPU overlay")
    if not expect_gpu:
        for obj in workloads(objects):
            for container in containers_of(obj):
                resources = container.get("resources") or {}
                if any(GPU in (resources.get(k) or {}) for k in ("limits", "requests")):
                    problems.append(f"{where(obj)} container {container.get('name')}: asks for a GPU")
    return problems


# ---------------------------------------------------------------- secrets, images, autoscaling, RBAC

def secret_references(objects: list[dict]) -> list[tuple[str, str, str | None]]:
    """(where, secret name, key or None) for every Secret a manifest references."""
    refs = []
    for obj in objects:
        for container in containers_of(obj):
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    refs.append((f"{where(obj)} env {env.get('name')}", ref.get("name"), ref.get("key")))
            for source in container.get("envFrom") or []:
                if source.get("secretRef"):
                    refs.append((f"{where(obj)} envFrom", source["secretRef"].get("name"), None))
        for volume in pod_spec(obj).get("volumes") or []:
            if volume.get("secret"):
                refs.append((f"{where(obj)} volume {volume.get('name')}", volume["secret"].get("secretName"), None))
        if obj.get("kind") in ("Role", "ClusterRole"):
            for rule in obj.get("rules") or []:
                if "secrets" in (rule.get("resources") or []):
                    for name in rule.get("resourceNames") or []:
                        refs.append((f"{where(obj)} rule", name, None))
    return refs


# Secrets that Kubeflow Pipelines itself creates in the namespaces runs use (the object store's credentials; KFP's
# launcher reads them through the API, k8s/base/pipeline-rbac.yaml): named by the Role, neither ours to create nor
# in the Secrets table of k8s/README.md (which mentions them in prose).
KUBEFLOW_SECRETS = {"mlpipeline-minio-artifact"}


def check_secrets(objects: list[dict], documented: dict[str, set[str]],
                  provided: set[str] = frozenset(KUBEFLOW_SECRETS)) -> list[str]:
    """Every referenced Secret (and key) is documented in k8s/README.md, or is one Kubeflow provides (``provided``);
    no Secret with data is committed."""
    problems = []
    for place, name, key in secret_references(objects):
        if name in provided and name not in documented:
            continue
        if name not in documented:
            problems.append(f"{place}: Secret {name!r} is not documented in k8s/README.md")
        elif key is not None and key not in documented[name]:
            problems.append(f"{place}: key {key!r} of Secret {name!r} is not documented in k8s/README.md")
    for obj in objects:
        if obj.get("kind") == "Secret" and (obj.get("data") or obj.get("stringData")):
            problems.append(f"{where(obj)}: a Secret with values is committed")
    return problems


def check_images(objects: list[dict], fitad_image: str, version: str) -> list[str]:
    """The project's image with the version tag (or its -cuda variant), or a third-party image pinned to a tag."""
    problems = []
    for obj in objects:
        for container in containers_of(obj):
            image = str(container.get("image", ""))
            name, tag, digest = split_image(image)
            label = f"{where(obj)} container {container.get('name')}: image {image!r}"
            if name == fitad_image:
                if tag not in (version, f"{version}-cuda"):
                    problems.append(f"{label}: tag is not the project version {version} (or {version}-cuda)")
            elif "/" not in name and name in ("fitad", "fitad-cuda"):
                problems.append(f"{label}: the logical image name was not mapped by kustomize `images`")
            elif digest is None and (tag is None or tag == "latest" or not re.search(r"\d", tag)):
                problems.append(f"{label}: a third-party image must be pinned to a version tag (never latest)")
    return problems


def check_hpas(objects: list[dict]) -> list[str]:
    problems = []
    for hpa in (o for o in objects if o.get("kind") == "HorizontalPodAutoscaler"):
        spec = hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        namespace = (hpa.get("metadata") or {}).get("namespace")
        if (ref.get("kind"), namespace, ref.get("name")) not in {object_id(o) for o in objects}:
            problems.append(f"{where(hpa)}: scaleTargetRef {ref.get('kind')}/{ref.get('name')} does not exist")
        if not 1 <= int(spec.get("minReplicas", 1)) <= int(spec.get("maxReplicas", 0)):
            problems.append(f"{where(hpa)}: replicas range {spec.get('minReplicas')}..{spec.get('maxReplicas')}")
        if not any(((m.get("resource") or {}).get("name") == "cpu") for m in spec.get("metrics") or []):
            problems.append(f"{where(hpa)}: does not scale on CPU")
    return problems


# Verbs a rule may grant on a kind of object at all (read-only for the ones that hold credentials or settings)
READ_ONLY_RESOURCES = {"secrets", "configmaps"}
ESCALATING_VERBS = {"escalate", "bind", "impersonate"}


def check_rbac(objects: list[dict]) -> list[str]:
    """Least privilege: no wildcard, nothing cluster-wide, Secrets and ConfigMaps only read and only by name, no
    verb that escalates, no list/watch on Secrets, bindings point at objects of the build."""
    problems = []
    ids = {object_id(o) for o in objects}
    for obj in objects:
        kind = obj.get("kind")
        if kind in ("ClusterRole", "ClusterRoleBinding"):
            problems.append(f"{where(obj)}: cluster-wide RBAC")
        if kind == "RoleBinding" and (obj.get("roleRef") or {}).get("kind") == "ClusterRole":
            problems.append(f"{where(obj)}: binds a ClusterRole (granted from outside the build)")
        if kind in ("Role", "ClusterRole"):
            for rule in obj.get("rules") or []:
                for field in ("verbs", "resources", "apiGroups", "resourceNames"):
                    if "*" in (rule.get(field) or []):
                        problems.append(f"{where(obj)}: '*' in {field}")
                if rule.get("nonResourceURLs"):
                    problems.append(f"{where(obj)}: nonResourceURLs (cluster-wide)")
                verbs = set(rule.get("verbs") or [])
                if verbs & ESCALATING_VERBS:
                    problems.append(f"{where(obj)}: verbs {sorted(verbs & ESCALATING_VERBS)} escalate privileges")
                for resource in READ_ONLY_RESOURCES & set(rule.get("resources") or []):
                    if not rule.get("resourceNames"):
                        problems.append(f"{where(obj)}: {resource} without resourceNames (every one of them)")
                    if verbs - {"get"}:
                        problems.append(f"{where(obj)}: {resource} verbs {rule.get('verbs')} beyond get")
        if kind == "RoleBinding":
            namespace = (obj.get("metadata") or {}).get("namespace")
            role = obj.get("roleRef") or {}
            if (role.get("kind"), namespace, role.get("name")) not in ids:
                problems.append(f"{where(obj)}: roleRef {role.get('kind')}/{role.get('name')} is not in the build")
            for subject in obj.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount" and (
                        ("ServiceAccount", subject.get("namespace", namespace), subject.get("name")) not in ids):
                    problems.append(f"{where(obj)}: subject ServiceAccount {subject.get('name')} is not in the build")
    return problems


def check_volumes(objects: list[dict]) -> list[str]:
    """Every mount names a volume of the pod; every PVC a pod claims is part of the build."""
    problems = []
    ids = {object_id(o) for o in objects}
    for obj in workloads(objects):
        spec = pod_spec(obj)
        namespace = (obj.get("metadata") or {}).get("namespace")
        volumes = {v.get("name") for v in spec.get("volumes") or []}
        volumes |= {(c.get("metadata") or {}).get("name")
                    for c in (obj.get("spec") or {}).get("volumeClaimTemplates") or []}
        for container in containers_of(obj):
            for mount in container.get("volumeMounts") or []:
                if mount.get("name") not in volumes:
                    problems.append(f"{where(obj)} container {container.get('name')}: mounts unknown volume "
                                    f"{mount.get('name')!r}")
        for volume in spec.get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and ("PersistentVolumeClaim", namespace, claim) not in ids:
                problems.append(f"{where(obj)}: volume {volume.get('name')} claims missing PVC {claim!r}")
    return problems


def check_env_expansion(objects: list[dict]) -> list[str]:
    """Every $(VAR) in a command/args is an env var of that container (else the kubelet leaves it as text)."""
    problems = []
    for obj in workloads(objects):
        for container in containers_of(obj):
            names = {e.get("name") for e in container.get("env") or []}
            for arg in container_command(container):
                for var in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
                    if var not in names:
                        problems.append(f"{where(obj)} container {container.get('name')}: $({var}) is not in its env")
    return problems


# The one container of Fit-AD allowed to run as root (k8s/base/model-cache-init.yaml): Kubeflow's step pods cannot set
# fsGroup, so a fresh model cache volume is given to uid/gid 1000 once. It may do exactly that and nothing else.
ROOT_EXCEPTION = {
    "kind": "Job", "name": "fitad-model-cache-init", "container": "chown",
    "command": ["chown", "-R", "1000:1000", "/cache"],
    "capabilities": {"CHOWN", "DAC_OVERRIDE"},   # the least chown -R needs; both in Pod Security "baseline"
    "mounts": {"/cache"},
}


def is_root_exception(obj: dict, container: dict) -> bool:
    kind, _, name = object_id(obj)
    return (kind, name, container.get("name")) == (ROOT_EXCEPTION["kind"], ROOT_EXCEPTION["name"],
                                                   ROOT_EXCEPTION["container"])


def check_root_exception(obj: dict, container: dict) -> list[str]:
    """The root container runs only its chown, with only the capabilities that needs, no token, no escalation."""
    spec = pod_spec(obj)
    ctx = {**(spec.get("securityContext") or {}), **(container.get("securityContext") or {})}
    caps = ctx.get("capabilities") or {}
    name = f"{where(obj)} container {container.get('name')} (runs as root)"
    problems = []
    if container_command(container) != ROOT_EXCEPTION["command"]:
        problems.append(f"{name}: runs {container_command(container)}, not only "
                        f"{' '.join(ROOT_EXCEPTION['command'])}")
    if caps.get("drop") != ["ALL"] or not set(caps.get("add") or []) <= ROOT_EXCEPTION["capabilities"]:
        problems.append(f"{name}: capabilities {caps}, expected drop ALL and add at most "
                        f"{sorted(ROOT_EXCEPTION['capabilities'])}")
    if ctx.get("allowPrivilegeEscalation") is not False or ctx.get("privileged"):
        problems.append(f"{name}: privileged or allowPrivilegeEscalation is not false")
    if not ctx.get("readOnlyRootFilesystem"):
        problems.append(f"{name}: root filesystem is writable")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{name}: mounts a service account token")
    if {m.get("mountPath") for m in container.get("volumeMounts") or []} != ROOT_EXCEPTION["mounts"]:
        problems.append(f"{name}: mounts {[m.get('mountPath') for m in container.get('volumeMounts') or []]}, "
                        f"expected only {sorted(ROOT_EXCEPTION['mounts'])}")
    if len(containers_of(obj)) != 1:
        problems.append(f"{where(obj)}: other containers beside the root one")
    return problems


def check_non_root(objects: list[dict]) -> list[str]:
    """Every container of every workload (third-party ones too) runs non-root, except ROOT_EXCEPTION, which is held
    to check_root_exception."""
    problems = []
    for obj in workloads(objects):
        pod_ctx = pod_spec(obj).get("securityContext") or {}
        for container in containers_of(obj):
            if is_root_exception(obj, container):
                problems += check_root_exception(obj, container)
                continue
            ctx = {**pod_ctx, **(container.get("securityContext") or {})}
            if not ctx.get("runAsNonRoot") or ("runAsUser" in ctx and int(ctx["runAsUser"]) == 0):
                problems.append(f"{where(obj)} container {container.get('name')}: may run as root")
    return problems


def check_hardening(objects: list[dict], fitad_image: str) -> list[str]:
    """Containers of the project's image run as uid 1000, non-root, read-only root with a writable /tmp (the one
    ROOT_EXCEPTION is held to its own rules instead); and no container of any image runs as root."""
    problems = check_non_root(objects)
    for obj in workloads(objects):
        spec = pod_spec(obj)
        pod_ctx = spec.get("securityContext") or {}
        volumes = {v.get("name"): v for v in spec.get("volumes") or []}
        for container in containers_of(obj):
            if split_image(str(container.get("image", "")))[0] != fitad_image or is_root_exception(obj, container):
                continue
            ctx = {**pod_ctx, **(container.get("securityContext") or {})}
            name = f"{where(obj)} container {container.get('name')}"
            if not ctx.get("runAsNonRoot") or int(ctx.get("runAsUser", 0)) != 1000:
                problems.append(f"{name}: not runAsNonRoot as uid 1000")
            if ctx.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}: allowPrivilegeEscalation is not false")
            if ctx.get("readOnlyRootFilesystem"):
                tmp = [m for m in container.get("volumeMounts") or [] if m.get("mountPath") == "/tmp"]
                if not tmp or "emptyDir" not in volumes.get(tmp[0].get("name"), {}):
                    problems.append(f"{name}: read-only root filesystem without an emptyDir at /tmp")
    return problems
