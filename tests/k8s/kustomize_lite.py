"""A small pure-Python renderer for exactly the kustomize subset k8s/ uses, so the manifests are checked without kubectl.

Supported (anything else in a kustomization.yaml is refused, so a new feature cannot be silently ignored):

- ``resources``: YAML files (multi-document) and directories holding a kustomization.yaml, in order;
- ``patches``: strategic-merge patches from ``path`` (or inline ``patch``), with an optional ``target``
  (kind / name / namespace); maps merge, a ``null`` value deletes a key, lists of maps merge by their merge key
  (``name``; ``mountPath`` for volumeMounts; ``containerPort`` / ``port`` for ports), the patch's items first and
  then the base's other items (kustomize's order), ``$patch: delete`` removes an item or a map, other lists are
  replaced;
- ``namespace``: set on every namespaced object, and on RoleBinding subjects naming a ServiceAccount of the build
  (or ``default``), as kustomize does;
- ``labels``: ``pairs`` onto metadata.labels, with ``includeTemplates`` also onto pod templates and a StatefulSet's
  volumeClaimTemplates (``includeSelectors: true`` is not used here and is refused);
- ``images``: ``name`` -> ``newName`` / ``newTag`` / ``digest`` on containers and initContainers.

Transformers run in kustomize's order: patches, namespace, labels, images.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import yaml

SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "patches", "namespace", "labels", "images"}
# Kinds that have no namespace (the ones that could appear in a project like this).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
                  "CustomResourceDefinition", "PriorityClass", "ValidatingWebhookConfiguration",
                  "MutatingWebhookConfiguration", "IngressClass", "RuntimeClass"}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
_DELETE = object()


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not implement, or is wrong in a way kustomize rejects."""


def object_id(obj: dict) -> tuple[str, str | None, str]:
    meta = obj.get("metadata") or {}
    return obj.get("kind"), meta.get("namespace"), meta.get("name")


def load_yaml_documents(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    for d in docs:
        if not isinstance(d, dict):
            raise KustomizeError(f"{path}: a document is not a mapping")
    return docs


# ---------------------------------------------------------------- strategic merge

def _merge_key(field: str | None, items: list) -> str | None:
    """The key a list of maps merges by, or None (replace the list)."""
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    if field == "volumeMounts":
        key = "mountPath"
    elif field == "ports":
        key = "containerPort" if any("containerPort" in i for i in items) else "port"
    else:
        key = "name"
    plain = [i for i in items if i.get("$patch") != "delete" or key in i]
    return key if all(key in i for i in plain) else None


def _strip(value: Any) -> Any:
    """A patch value with its directives removed (what lands in the object when there is nothing to merge with)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "$patch" and v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and v.get("$patch") == "delete")]
    return copy.deepcopy(value)


def strategic_merge(base: Any, patch: Any, field: str | None = None) -> Any:
    """``patch`` merged into ``base`` (both left unchanged); may return the delete sentinel for ``$patch: delete``."""
    if isinstance(patch, dict):
        if patch.get("$patch") == "delete":
            return _DELETE
        if patch.get("$patch") == "replace":
            return _strip(patch)
        if not isinstance(base, dict):
            return _strip(patch)
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if key == "$patch":
                continue
            if value is None:
                out.pop(key, None)
            elif key in out:
                merged = strategic_merge(out[key], value, key)
                if merged is _DELETE:
                    out.pop(key)
                else:
                    out[key] = merged
            else:
                out[key] = _strip(value)
        return out
    if isinstance(patch, list) and isinstance(base, list):
        key = _merge_key(field, base + patch)
        if key is None:
            return _strip(patch)
        # kustomize's order: the patch's items first (merged with the base's item of the same key), then the
        # base's items the patch does not name, in their order
        out, named = [], {item.get(key) for item in patch}
        for item in patch:
            old = next((b for b in base if b.get(key) == item.get(key)), None)
            if old is None:
                if item.get("$patch") != "delete":
                    out.append(_strip(item))
                continue
            merged = strategic_merge(old, item, None)
            if merged is not _DELETE:
                out.append(merged)
        return out + [copy.deepcopy(b) for b in base if b.get(key) not in named]
    return _strip(patch)


# ---------------------------------------------------------------- transformers

def _matches(obj: dict, target: dict) -> bool:
    kind, namespace, name = object_id(obj)
    unsupported = set(target) - {"kind", "name", "namespace", "group", "version"}
    if unsupported:
        raise KustomizeError(f"patch target selector(s) {sorted(unsupported)} are not supported by kustomize_lite")
    api = obj.get("apiVersion", "")
    group, _, version = api.rpartition("/")
    return ((target.get("kind") in (None, kind)) and (target.get("name") in (None, name))
            and (target.get("namespace") in (None, namespace)) and (target.get("group") in (None, group))
            and (target.get("version") in (None, version)))


def apply_patch(objects: list[dict], patch: dict, target: dict | None, where: str) -> list[dict]:
    if not isinstance(patch, dict):
        raise KustomizeError(f"{where}: only strategic-merge patches (a mapping) are supported, not JSON 6902 lists")
    if target is None:
        meta = patch.get("metadata") or {}
        target = {"kind": patch.get("kind"), "name": meta.get("name")}
        if meta.get("namespace"):
            target["namespace"] = meta["namespace"]
    hits = [i for i, obj in enumerate(objects) if _matches(obj, target)]
    if not hits:
        raise KustomizeError(f"{where}: the patch matches no resource ({target})")
    out = list(objects)
    for i in hits:
        body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")}
        if "metadata" in body:  # the patch's own name only selects the target
            body["metadata"] = {k: v for k, v in body["metadata"].items() if k not in ("name", "namespace")}
            if not body["metadata"]:
                del body["metadata"]
        merged = strategic_merge(out[i], body)
        if merged is _DELETE:
            out[i] = None
        else:
            out[i] = merged
    return [o for o in out if o is not None]


def set_namespace(objects: list[dict], namespace: str) -> None:
    service_accounts = {obj["metadata"]["name"] for obj in objects if obj.get("kind") == "ServiceAccount"}
    for obj in objects:
        if obj.get("kind") not in CLUSTER_SCOPED:
            obj.setdefault("metadata", {})["namespace"] = namespace
        if obj.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
            for subject in obj.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount" and (
                        subject.get("name") in service_accounts or subject.get("name") == "default"):
                    subject["namespace"] = namespace


def _pod_template_label_maps(obj: dict) -> Iterable[dict]:
    spec = obj.get("spec") or {}
    if obj.get("kind") in POD_TEMPLATE_KINDS and "template" in spec:
        yield spec["template"].setdefault("metadata", {}).setdefault("labels", {})
    if obj.get("kind") == "CronJob":
        job = spec.setdefault("jobTemplate", {})
        yield job.setdefault("metadata", {}).setdefault("labels", {})
        yield job.setdefault("spec", {}).setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})
    if obj.get("kind") == "StatefulSet":
        for claim in spec.get("volumeClaimTemplates") or []:
            yield claim.setdefault("metadata", {}).setdefault("labels", {})


def add_labels(objects: list[dict], entry: dict, where: str) -> None:
    unsupported = set(entry) - {"pairs", "includeTemplates", "includeSelectors"}
    if unsupported or entry.get("includeSelectors"):
        raise KustomizeError(f"{where}: labels options {sorted(unsupported) or ['includeSelectors: true']} are not "
                             "supported by kustomize_lite")
    pairs = {str(k): str(v) for k, v in (entry.get("pairs") or {}).items()}
    for obj in objects:
        obj.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if entry.get("includeTemplates"):
            for labels in _pod_template_label_maps(obj):
                labels.update(pairs)


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """``name[:tag][@digest]`` as (name, tag, digest); a registry port (host:5000/x) is part of the name."""
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    name, tag = ref, None
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        name, tag = ref[:colon], ref[colon + 1:]
    return name, tag, digest


def containers_of(obj: dict) -> list[dict]:
    """Every container and init container of a workload (or Pod, or CronJob), in the object itself."""
    spec = obj.get("spec") or {}
    pod = None
    if obj.get("kind") == "Pod":
        pod = spec
    elif obj.get("kind") == "CronJob":
        pod = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    elif "template" in spec:
        pod = (spec.get("template") or {}).get("spec")
    if not pod:
        return []
    return list(pod.get("initContainers") or []) + list(pod.get("containers") or [])


def set_images(objects: list[dict], entries: list[dict], where: str) -> None:
    for entry in entries:
        unsupported = set(entry) - {"name", "newName", "newTag", "digest"}
        if unsupported:
            raise KustomizeError(f"{where}: images options {sorted(unsupported)} are not supported by kustomize_lite")
    for obj in objects:
        for container in containers_of(obj):
            name, tag, digest = split_image(str(container.get("image", "")))
            for entry in entries:
                if entry["name"] != name:
                    continue
                new_name = entry.get("newName", name)
                if entry.get("digest"):
                    container["image"] = f"{new_name}@{entry['digest']}"
                elif "newTag" in entry:
                    container["image"] = f"{new_name}:{entry['newTag']}"
                else:
                    container["image"] = new_name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
                break


# ---------------------------------------------------------------- build

def build(directory: str | Path) -> list[dict]:
    """The objects ``kubectl kustomize DIRECTORY`` would print (order aside)."""
    directory = Path(directory)
    kfile = directory / "kustomization.yaml"
    if not kfile.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    spec = yaml.safe_load(kfile.read_text(encoding="utf-8")) or {}
    unknown = set(spec) - SUPPORTED_KEYS
    if unknown:
        raise KustomizeError(f"{kfile}: fields {sorted(unknown)} are not supported by kustomize_lite")
    if spec.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{kfile}: kind must be Kustomization")

    objects: list[dict] = []
    for entry in spec.get("resources") or []:
        path = (directory / entry).resolve()
        if path.is_dir():
            objects += build(path)
        elif path.is_file():
            objects += load_yaml_documents(path)
        else:
            raise KustomizeError(f"{kfile}: resource {entry!r} does not exist")
    seen: set = set()
    for obj in objects:
        oid = object_id(obj)
        if oid in seen:
            raise KustomizeError(f"{kfile}: resource {oid} is defined twice")
        seen.add(oid)

    for i, entry in enumerate(spec.get("patches") or []):
        where = f"{kfile}: patches[{i}]"
        if "path" in entry:
            documents = load_yaml_documents(directory / entry["path"])
        elif "patch" in entry:
            documents = [d for d in yaml.safe_load_all(entry["patch"]) if d is not None]
        else:
            raise KustomizeError(f"{where}: needs path or patch")
        for document in documents:
            objects = apply_patch(objects, document, entry.get("target"), where)

    if spec.get("namespace"):
        set_namespace(objects, spec["namespace"])
    for i, entry in enumerate(spec.get("labels") or []):
        add_labels(objects, entry, f"{kfile}: labels[{i}]")
    if spec.get("images"):
        set_images(objects, spec["images"], f"{kfile}: images")
    return objects
