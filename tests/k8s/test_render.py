"""kustomize_lite against the reference: `kubectl kustomize` (when installed, kustomize v4+) must print the same objects
for every overlay; and the renderer's own rules on small inputs, so a mismatch points at one rule."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from . import kustomize_lite as kl
from .conftest import OVERLAYS
from .manifest_checks import containers_of


def kubectl_kustomize_version() -> tuple[int, ...] | None:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    try:
        out = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        found = re.match(r"v?(\d+)\.(\d+)\.(\d+)", json.loads(out).get("kustomizeVersion", ""))
    except (subprocess.SubprocessError, json.JSONDecodeError, OSError):
        return None
    return tuple(int(x) for x in found.groups()) if found else None


def kubectl_objects(directory) -> dict | None:
    """`kubectl kustomize DIRECTORY` by object id, or None when no kubectl with kustomize v5 is at hand."""
    version = kubectl_kustomize_version()
    if version is None or version < (5,):
        return None
    result = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return {kl.object_id(o): o for o in yaml.safe_load_all(result.stdout) if o}


def key_fields(obj: dict) -> dict:
    spec = obj.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    return {
        "replicas": spec.get("replicas"),
        "hpa": (spec.get("minReplicas"), spec.get("maxReplicas")) if obj["kind"] == "HorizontalPodAutoscaler" else None,
        "nodeSelector": pod.get("nodeSelector"),
        "tolerations": pod.get("tolerations"),
        "containers": {c["name"]: {"image": c.get("image"), "resources": c.get("resources"),
                                   "probes": [c.get(p) for p in ("readinessProbe", "livenessProbe", "startupProbe")]}
                       for c in containers_of(obj)},
    }


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_kubectl_kustomize_renders_the_same_objects(rendered, overlay):
    version = kubectl_kustomize_version()
    if version is None:
        pytest.skip("kubectl is not on PATH (or reports no kustomize version): only kustomize_lite rendered k8s/")
    if version < (4,):
        pytest.skip(f"kubectl's kustomize is v{'.'.join(map(str, version))}; k8s/ needs v4+ (labels, patches)")
    result = subprocess.run(["kubectl", "kustomize", str(OVERLAYS[overlay])], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "deprecated" not in result.stderr.lower(), result.stderr
    reference = {kl.object_id(o): o for o in yaml.safe_load_all(result.stdout) if o}
    mine = {kl.object_id(o): o for o in rendered[overlay]}
    assert sorted(mine, key=str) == sorted(reference, key=str)
    for oid, obj in mine.items():
        assert key_fields(obj) == key_fields(reference[oid]), oid
    if version >= (5,):  # the exact output of the kustomize these manifests are written for
        for oid, obj in mine.items():
            assert obj == reference[oid], oid


# ---------------------------------------------------------------- the renderer's rules

def test_strategic_merge_rules(tmp_path):
    base = {"spec": {"containers": [
        {"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
         "volumeMounts": [{"name": "v1", "mountPath": "/a"}, {"name": "v2", "mountPath": "/b"}],
         "args": ["--one"]},
        {"name": "b", "image": "y"}],
        "tolerations": [{"key": "k", "effect": "NoSchedule"}], "drop": 1}}
    patch = {"spec": {"containers": [
        {"name": "c", "image": "z"},
        {"name": "a", "env": [{"name": "C", "value": "3"}, {"name": "A", "$patch": "delete"}],
         "volumeMounts": [{"name": "v9", "mountPath": "/b"}], "args": ["--two"]}],
        "tolerations": [{"key": "gpu", "operator": "Exists"}], "drop": None}}
    merged = kl.strategic_merge(base, patch)
    assert [c["name"] for c in merged["spec"]["containers"]] == ["c", "a", "b"]   # patch items first
    a = merged["spec"]["containers"][1]
    assert a["image"] == "x" and a["args"] == ["--two"]                          # maps merge, scalars lists replace
    assert a["env"] == [{"name": "C", "value": "3"}, {"name": "B", "value": "2"}]
    assert a["volumeMounts"] == [{"name": "v9", "mountPath": "/b"}, {"name": "v1", "mountPath": "/a"}]
    assert merged["spec"]["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert "drop" not in merged["spec"]
    assert base["spec"]["containers"][0]["env"][0] == {"name": "A", "value": "1"}  # inputs untouched

    # the same rules through a kustomization: what kustomize_lite builds, and kubectl agrees where it is installed
    def pod(spec):
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(pod(base["spec"])))
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(pod(patch["spec"])))
    (tmp_path / "kustomization.yaml").write_text("resources: [r.yaml]\npatches: [{path: p.yaml}]\n")
    built = kl.build(tmp_path)
    assert built == [pod(merged["spec"])]
    reference = kubectl_objects(tmp_path)
    if reference is not None:
        assert reference == {kl.object_id(o): o for o in built}


def test_images_namespace_and_labels(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "kustomization.yaml").write_text(
        "resources: [r.yaml]\nimages: [{name: app, newName: reg.example/app, newTag: '1.0'}]\n")
    (tmp_path / "base" / "r.yaml").write_text("""
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: s}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      initContainers: [{name: i, image: app}]
      containers: [{name: c, image: 'localhost:5000/other:2'}]
  volumeClaimTemplates: [{metadata: {name: d}}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: sa}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: rb}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}
subjects: [{kind: ServiceAccount, name: sa}, {kind: ServiceAccount, name: elsewhere, namespace: other}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cr}
""")
    (tmp_path / "kustomization.yaml").write_text("""
namespace: ns
resources: [base]
labels: [{pairs: {team: t}, includeTemplates: true}]
images: [{name: localhost:5000/other, newTag: '3'}]
""")
    objects = {o["kind"]: o for o in kl.build(tmp_path)}
    sts = objects["StatefulSet"]
    assert [c["image"] for c in containers_of(sts)] == ["reg.example/app:1.0", "localhost:5000/other:3"]
    assert sts["metadata"] == {"name": "s", "namespace": "ns", "labels": {"team": "t"}}
    assert sts["spec"]["template"]["metadata"]["labels"] == {"a": "b", "team": "t"}
    assert sts["spec"]["selector"]["matchLabels"] == {"a": "b"}
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["labels"] == {"team": "t"}
    assert objects["RoleBinding"]["subjects"] == [{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"},
                                                  {"kind": "ServiceAccount", "name": "elsewhere", "namespace": "other"}]
    assert "namespace" not in objects["ClusterRole"]["metadata"]
    reference = kubectl_objects(tmp_path)
    if reference is not None:
        assert reference == {kl.object_id(o): o for o in objects.values()}


def test_refuses_what_it_does_not_implement(tmp_path):
    (tmp_path / "r.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    for extra in ("commonLabels: {a: b}", "replicas: [{name: c, count: 2}]",
                  "labels: [{pairs: {a: b}, includeSelectors: true}]",
                  "patches: [{path: p.yaml}]"):
        (tmp_path / "p.yaml").write_text("- op: add\n  path: /data\n  value: {}\n")  # a JSON 6902 patch
        (tmp_path / "kustomization.yaml").write_text(f"resources: [r.yaml]\n{extra}\n")
        with pytest.raises(kl.KustomizeError):
            kl.build(tmp_path)


def test_a_patch_that_matches_nothing_is_an_error(tmp_path):
    (tmp_path / "r.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    (tmp_path / "p.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\ndata: {x: y}\n")
    (tmp_path / "kustomization.yaml").write_text("resources: [r.yaml]\npatches: [{path: p.yaml}]\n")
    with pytest.raises(kl.KustomizeError, match="matches no resource"):
        kl.build(tmp_path)
