"""Deployment artifacts are valid without a cluster: KubeRay manifests, launcher configs, image, docs.

* every RayCluster/RayJob that ``k8s/`` renders to validates against the KubeRay CRD schemas in
  ``../shared/kuberay-crds`` (unknown fields rejected, as the API server does);
* the rendered clusters have the shape docs/deploy.md promises (0-CPU head, autoscaler v2, GPU group
  scaling from 0, non-root, shared claim, HDF5 locking off);
* RayJob entrypoints are real CLI commands over config files that exist and validate;
* the launcher YAMLs pass Ray's own ``prepare_config`` + ``validate_config``;
* Ray/Python/package versions agree across pyproject.toml, cluster/Dockerfile, k8s/ and cluster/*.yaml.
"""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
import tomllib
from fractions import Fraction
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from k8s_manifests import (
    crd_validators,
    load_documents,
    parse_quantity,
    pod_templates,
    render_kustomization,
    with_change,
)

REPO = Path(__file__).resolve().parents[1]
CRD_DIR = REPO.parent / "shared" / "kuberay-crds"
K8S = REPO / "k8s"
TARGETS = ["storage", "cluster", "base", "overlays/small", "overlays/large"]
LAUNCHERS = ["cluster/aws.yaml", "cluster/gcp.yaml"]
JOB_COMMANDS = {"run", "generate", "tokenize"}
LAUNCHER_COMMAND_KEYS = [
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
]


@pytest.fixture(scope="module")
def validators():
    if not CRD_DIR.is_dir():
        pytest.skip(f"KubeRay CRDs not found at {CRD_DIR} (expected the shared/ checkout next to the repo)")
    return crd_validators(CRD_DIR)


def rendered(target: str) -> list[dict[str, Any]]:
    return render_kustomization(K8S / target)


def ray_resources() -> list[tuple[str, dict[str, Any]]]:
    """``(target, resource)`` for every ray.io resource any kustomization renders."""
    return [(t, d) for t in TARGETS for d in rendered(t) if d["apiVersion"].startswith("ray.io/")]


def ray_params(kind: str | None = None) -> list:
    return [
        pytest.param(t, d, id=f"{t}:{d['kind']}") for t, d in ray_resources() if kind in (None, d["kind"])
    ]


def cluster_spec(resource: dict[str, Any]) -> dict[str, Any]:
    return resource["spec"]["rayClusterSpec"] if resource["kind"] == "RayJob" else resource["spec"]


def containers(resource: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(role, c) for role, t in pod_templates(resource) for c in t["spec"]["containers"]]


def ray_containers(resource: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``(role, container, pod spec)`` for head and workers (not the job submitter)."""
    return [
        (role, c, t["spec"])
        for role, t in pod_templates(resource)
        if role != "submitter"
        for c in t["spec"]["containers"]
    ]


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pinned_ray_version() -> str:
    pins = [d for d in pyproject()["project"]["dependencies"] if re.match(r"ray(\[|==)", d)]
    assert len(pins) == 1, f"expected one ray requirement in pyproject.toml, got {pins}"
    m = re.fullmatch(r"ray(\[[a-z,]+\])?==([0-9.]+)", pins[0])
    assert m, f"ray must be pinned exactly (ray[...]==X.Y.Z), got {pins[0]!r}"
    return m.group(2)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of cluster/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "cluster" / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instr, _, args = line.partition(" ")
            out.append((instr.upper(), args.strip()))
    return out


# ---------------------------------------------------------------------------------------------- KubeRay


@pytest.mark.parametrize("target", TARGETS)
def test_rendered_ray_resources_validate_against_kuberay_crds(target, validators):
    docs = rendered(target)
    assert docs, f"k8s/{target} renders nothing"
    for doc in docs:
        if not doc["apiVersion"].startswith("ray.io/"):
            continue
        assert doc["apiVersion"] == "ray.io/v1", f"k8s/{target}: {doc['kind']} uses {doc['apiVersion']}"
        errors = validators[doc["kind"]].violations(doc)
        assert not errors, f"k8s/{target} {doc['kind']}/{doc['metadata']['name']}:\n" + "\n".join(
            map(str, errors)
        )


@pytest.mark.parametrize(
    ("pointer", "value", "expected"),
    [
        # misspelt fields at three depths: KubeRay spec, core PodSpec container, ObjectMeta
        ("/spec/rayClusterSpec/workerGroupSpecs/0/minReplica", 0, "'minReplica' was unexpected"),
        (
            "/spec/rayClusterSpec/headGroupSpec/template/spec/containers/0/resource",
            {},
            "'resource' was unexpected",
        ),
        ("/metadata/lables", {"a": "b"}, "'lables' was unexpected"),
        # wrong type, bad quantity, value outside an enum, name that is not a DNS-1123 label
        ("/spec/rayClusterSpec/workerGroupSpecs/0/maxReplicas", "8", "is not of type 'integer'"),
        (
            "/spec/rayClusterSpec/workerGroupSpecs/0/template/spec/containers/0/resources/limits/memory",
            "26 Gi",
            "does not match",
        ),
        ("/spec/rayClusterSpec/autoscalerOptions/version", "v3", "is not one of ['v1', 'v2']"),
        ("/metadata/name", "Spinlock_Run", "does not match"),
    ],
)
def test_crd_validation_rejects_broken_manifests(pointer, value, expected, validators):
    (job,) = rendered("base")
    assert validators["RayJob"].violations(job) == []
    errors = validators["RayJob"].violations(with_change(job, pointer, value))
    assert errors, f"setting {pointer} = {value!r} passed validation"
    assert any(expected in e.message for e in errors), [str(e) for e in errors]
    # the error names where the problem is
    parent = pointer.rsplit("/", 1)[0] if "was unexpected" in expected else pointer
    assert any(_json_path(parent) == e.path for e in errors), [str(e) for e in errors]


def _json_path(pointer: str) -> str:
    parts = [p for p in pointer.split("/") if p]
    return "$" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts)


@pytest.mark.parametrize(
    ("quantity", "value"),
    [("500m", Fraction(1, 2)), ("16Gi", 16 * 2**30), ("1Ti", 2**40), ("2k", 2000), ("1e3", 1000), (4, 4)],
)
def test_parse_quantity(quantity, value):
    assert parse_quantity(quantity) == value


@pytest.mark.parametrize("bad", ["2 Gi", "16GB", "", "Gi"])
def test_parse_quantity_rejects_malformed(bad):
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(bad)


def test_strict_yaml_loader_rejects_duplicate_keys(tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text("kind: RayJob\nspec:\n  backoffLimit: 1\n  backoffLimit: 3\n")
    with pytest.raises(yaml.YAMLError, match="duplicate key 'backoffLimit'"):
        load_documents(p)


def test_renderer_refuses_unsupported_kustomize_features(tmp_path):
    head = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [rayjob.yaml]\n"
    shutil.copy(K8S / "base" / "rayjob.yaml", tmp_path / "rayjob.yaml")
    (tmp_path / "kustomization.yaml").write_text(head + "namePrefix: x-\n")
    with pytest.raises(ValueError, match="namePrefix"):
        render_kustomization(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        head + "patches:\n  - target: {kind: RayJob, name: no-such-job}\n    patch: '[]'\n"
    )
    with pytest.raises(ValueError, match="matches no resource"):
        render_kustomization(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        head + "patches:\n  - target: {kind: RayJob}\n    patch: '{spec: {backoffLimit: 1}}'\n"
    )
    with pytest.raises(ValueError, match="only JSON6902"):
        render_kustomization(tmp_path)
    # a failing `test` op (worker groups reordered under an overlay) stops the render
    (tmp_path / "kustomization.yaml").write_text(
        head + "patches:\n  - target: {kind: RayJob}\n    patch: |-\n"
        "      - {op: test, path: /spec/rayClusterSpec/workerGroupSpecs/0/groupName, value: cpu}\n"
    )
    with pytest.raises(ValueError, match="patches\\[0\\]"):
        render_kustomization(tmp_path)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed: no reference renderer")
@pytest.mark.parametrize("target", TARGETS)
def test_renderer_agrees_with_kubectl_kustomize(target):
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / target)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    reference = [d for d in yaml.safe_load_all(out) if d]

    def key(d):
        return d["kind"], d["metadata"]["name"]

    assert sorted(rendered(target), key=key) == sorted(reference, key=key)


def test_rayjob_cluster_is_the_interactive_cluster():
    """One cluster shape: the RayJob's ephemeral cluster is exactly the RayCluster in k8s/cluster."""
    (cluster,) = rendered("cluster")
    (job,) = rendered("base")
    assert job["spec"]["rayClusterSpec"] == cluster["spec"]


@pytest.mark.parametrize(("target", "resource"), ray_params())
def test_cluster_shape(target, resource):
    spec = cluster_spec(resource)
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0", "the head must not take tasks or actors"
    (head_container,) = head["template"]["spec"]["containers"]
    assert {p["containerPort"] for p in head_container["ports"]} >= {6379, 8265, 10001}

    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["version"] == "v2"
    for role, template in pod_templates(resource):
        assert template["spec"]["restartPolicy"] == "Never", (
            f"{role}: autoscaler v2 needs restartPolicy Never"
        )

    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    gpu_groups = [
        g
        for g in groups.values()
        if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"].get("limits", {})
    ]
    assert gpu_groups, "no worker group requests nvidia.com/gpu"
    for g in groups.values():
        assert g["minReplicas"] == 0, f"group {g['groupName']} must scale to zero"
        assert g["minReplicas"] <= g.get("replicas", 0) <= g["maxReplicas"]
        assert g["maxReplicas"] >= 1
    for g in gpu_groups:
        limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert parse_quantity(limits["nvidia.com/gpu"]) >= 1
        requests = g["template"]["spec"]["containers"][0]["resources"].get("requests", {})
        assert requests.get("nvidia.com/gpu", limits["nvidia.com/gpu"]) == limits["nvidia.com/gpu"]
        tolerated = {t["key"] for t in g["template"]["spec"].get("tolerations", [])}
        assert "nvidia.com/gpu" in tolerated, f"group {g['groupName']} does not tolerate the GPU taint"
    assert len(gpu_groups) < len(groups), "no CPU-only worker group for the Ray Data stages"


@pytest.mark.parametrize(("target", "resource"), ray_params())
def test_pods_are_bounded_and_non_root(target, resource):
    for role, c in containers(resource):
        res = c["resources"]
        for kind in ("cpu", "memory"):
            assert kind in res["requests"] and kind in res["limits"], f"{role}/{c['name']}: {kind} unbounded"
            assert parse_quantity(res["requests"][kind]) <= parse_quantity(res["limits"][kind]), (role, kind)
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, f"{role}/{c['name']}"
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], f"{role}/{c['name']}"
    for role, template in pod_templates(resource):
        sc = template["spec"]["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, role
    for role, c, pod in ray_containers(resource):
        shm = [v for v in pod["volumes"] if v["name"] == "dshm"]
        assert shm and shm[0]["emptyDir"]["medium"] == "Memory", f"{role}: no memory-backed /dev/shm"
        # memory-backed emptyDir counts against the container's memory limit
        assert parse_quantity(shm[0]["emptyDir"]["sizeLimit"]) < parse_quantity(
            c["resources"]["limits"]["memory"]
        )


@pytest.mark.parametrize(("target", "resource"), ray_params())
def test_every_ray_pod_mounts_the_shared_claim_with_hdf5_locking_off(target, resource):
    (pvc,) = rendered("storage")
    assert pvc["kind"] == "PersistentVolumeClaim"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "shards from many nodes need an RWX volume"
    assert parse_quantity(pvc["spec"]["resources"]["requests"]["storage"]) >= parse_quantity("100Gi")
    mount_paths = set()
    for role, c, pod in ray_containers(resource):
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        assert env.get("HDF5_USE_FILE_LOCKING") == "FALSE", role
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod["volumes"]
            if "persistentVolumeClaim" in v
        }
        mounted = [
            m["mountPath"] for m in c["volumeMounts"] if claims.get(m["name"]) == pvc["metadata"]["name"]
        ]
        assert len(mounted) == 1, f"{role}: claim {pvc['metadata']['name']} not mounted"
        mount_paths.update(mounted)
    assert len(mount_paths) == 1, f"the claim is mounted at different paths: {mount_paths}"


@pytest.mark.parametrize(("target", "job"), ray_params("RayJob"))
def test_rayjob_entrypoint_is_a_real_cli_command(target, job):
    from spinlock.cli.main import build_parser
    from spinlock.config.loading import load_config

    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "spinlock", f"k8s/{target}: entrypoint must call the console script, got {argv[0]!r}"
    assert argv[1] in JOB_COMMANDS, f"k8s/{target}: {argv[1]!r} is not one of {sorted(JOB_COMMANDS)}"
    try:
        args = build_parser().parse_args(argv[1:])
    except SystemExit as e:  # argparse reports on stderr and exits 2
        pytest.fail(
            f"k8s/{target}: `{job['spec']['entrypoint']}` is rejected by the CLI parser (exit {e.code})"
        )
    assert args.command == argv[1]
    # relative paths resolve against the head's working directory, i.e. the repository copy in the image
    workdir = dict(dockerfile_instructions())["WORKDIR"]
    (head,) = cluster_spec(job)["headGroupSpec"]["template"]["spec"]["containers"]
    assert head["workingDir"] == workdir
    if argv[1] in {"run", "generate"}:
        config = REPO / argv[2]
        assert not Path(argv[2]).is_absolute(), "config paths must be relative to the image's working dir"
        assert config.is_file(), f"k8s/{target}: entrypoint config {argv[2]} does not exist in the repository"
        load_config(config)  # raises ConfigError naming the key if the config is invalid
        overrides = dict(kv.split("=", 1) for kv in args.overrides)
        if overrides.get("distributed.gpus_per_actor") == "1":  # one actor per GPU pod: size it to the pod
            (gpu,) = [g for g in cluster_spec(job)["workerGroupSpecs"] if g["groupName"] == "gpu"]
            (c,) = gpu["template"]["spec"]["containers"]
            pod_cpus = parse_quantity(c["resources"]["limits"]["cpu"])
            assert float(overrides.get("distributed.cpus_per_actor", 1)) == pod_cpus - 1, (
                f"k8s/{target}: a GPU actor should take the pod's {pod_cpus:g} CPUs minus one for Ray Data")
    out = argv[argv.index("--out") + 1]
    mounts = {m["mountPath"] for m in head["volumeMounts"] if m["name"] == "spinlock-data"}
    assert any(out.startswith(m + "/") for m in mounts) or out.startswith(("s3://", "gs://")), (
        f"k8s/{target}: --out {out} is neither on the shared claim ({mounts}) nor an object-store URI"
    )


@pytest.mark.parametrize(("target", "job"), ray_params("RayJob"))
def test_rayjob_lifecycle(target, job):
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0
    assert spec["backoffLimit"] >= 1, "retries are safe: a resubmitted run resumes from complete shards"
    assert "clusterSelector" not in spec, "shutdownAfterJobFinishes needs the job's own rayClusterSpec"


def test_overlays_scale_the_baseline_and_do_not_collide():
    jobs = {t: d for t, d in ray_resources() if d["kind"] == "RayJob"}
    names = [j["metadata"]["name"] for j in jobs.values()]
    assert len(set(names)) == len(names), f"RayJob names collide across overlays: {names}"

    def gpu_max(job):
        (g,) = [g for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"] if g["groupName"] == "gpu"]
        return g["maxReplicas"]

    assert gpu_max(jobs["overlays/small"]) < gpu_max(jobs["base"]) < gpu_max(jobs["overlays/large"])
    assert "configs/quickstart.yaml" in jobs["overlays/small"]["spec"]["entrypoint"]
    assert "configs/baseline-10k.yaml" in jobs["base"]["spec"]["entrypoint"]


# ------------------------------------------------------------------------------------- cluster launcher


def launcher(path: str) -> dict[str, Any]:
    (doc,) = load_documents(REPO / path)
    return doc


@pytest.mark.parametrize("path", LAUNCHERS)
def test_launcher_config_passes_rays_validation(path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = launcher(path)
    prepared = prepare_config(copy.deepcopy(raw))  # what `ray up` does before validating
    validate_config(prepared)
    # Ray merges defaults per top-level key: an omitted command list would run Ray's default setup
    # (installing a nightly wheel) inside our image.
    for key in LAUNCHER_COMMAND_KEYS:
        assert key in raw, f"{path}: {key} must be set explicitly"
    assert prepared["head_setup_commands"] == raw["setup_commands"] + raw["head_setup_commands"]

    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert head["resources"].get("CPU") == 0, f"{path}: the head must not take tasks"
    workers = {k: v for k, v in types.items() if k != prepared["head_node_type"]}
    for name, t in workers.items():
        assert t["min_workers"] == 0 and 1 <= t["max_workers"] <= prepared["max_workers"], name
    gpu = [t for t in workers.values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu, f"{path}: no GPU worker type"
    for t in gpu:
        nc = t["node_config"]
        spot = (
            nc.get("InstanceMarketOptions", {}).get("MarketType") == "spot"
            or nc.get("scheduling", {}).get("provisioningModel") == "SPOT"
        )
        assert spot, f"{path}: GPU workers are stateless and should use spot capacity"
    assert prepared["idle_timeout_minutes"] > 0
    assert prepared["docker"]["image"], f"{path}: no docker image"


@pytest.mark.parametrize(
    ("pointer", "value"),
    [("/idle_timeout_minute", 5), ("/available_node_types/gpu_worker/min_worker", 0)],
)
def test_launcher_validation_rejects_misspelt_keys(pointer, value):
    from ray.autoscaler._private.util import prepare_config, validate_config

    bad = with_change(launcher("cluster/aws.yaml"), pointer, value)
    with pytest.raises(jsonschema.ValidationError, match=pointer.rsplit("/", 1)[1]):
        validate_config(prepare_config(bad))


# ----------------------------------------------------------------------------------- image and versions


def test_versions_agree():
    ray_version = pinned_ray_version()
    version = pyproject()["project"]["version"]
    py = re.search(r">=\s*3\.(\d+)", pyproject()["project"]["requires-python"]).group(1)

    (base_image,) = [a for i, a in dockerfile_instructions() if i == "FROM"]
    assert base_image == f"rayproject/ray:{ray_version}-py3{py}-gpu", base_image

    tag = f"{version}-ray{ray_version}"
    images = set()
    for target, resource in ray_resources():
        spec = cluster_spec(resource)
        assert spec["rayVersion"] == ray_version, f"k8s/{target}: rayVersion {spec['rayVersion']}"
        images |= {c["image"] for _, c in containers(resource)}
    for path in LAUNCHERS:
        images.add(launcher(path)["docker"]["image"])
    wrong = {i for i in images if i.rpartition(":")[2] != tag}
    assert not wrong, f"images not tagged {tag}: {sorted(wrong)}"
    k8s_images = {c["image"] for _, r in ray_resources() for _, c in containers(r)}
    assert len(k8s_images) == 1, f"head, workers and submitter must run one image: {k8s_images}"


def test_dockerfile_installs_the_package_with_configs_and_hdf5_setting():
    instr = dockerfile_instructions()
    envs = " ".join(a for i, a in instr if i == "ENV")
    assert "HDF5_USE_FILE_LOCKING=FALSE" in envs
    copies = [a.split()[-2] for i, a in instr if i == "COPY"]
    assert {"pyproject.toml", "spinlock", "configs"} <= set(copies)
    for src in copies:
        assert (REPO / src).exists(), f"cluster/Dockerfile copies {src}, which is not in the repository"
    runs = " ".join(a for i, a in instr if i == "RUN")
    assert "pip install" in runs and "spinlock --help" in runs
    ignore = (REPO / "cluster" / "Dockerfile.dockerignore").read_text().split()
    assert {f"!{s}" for s in ("pyproject.toml", "spinlock/", "configs/")} <= set(ignore)


def test_deploy_doc_references_existing_files():
    text = (REPO / "docs" / "deploy.md").read_text()
    refs = {
        m.rstrip(".,:;)`")
        for m in re.findall(r"(?<![\w/.-])(?:k8s|cluster|configs)/[A-Za-z0-9_./{},-]*[A-Za-z0-9_}]", text)
    }
    assert refs, "docs/deploy.md names no deployment files"
    expanded = set()
    for r in refs:
        m = re.search(r"\{([^}]*)\}", r)
        expanded |= {r[: m.start()] + alt + r[m.end() :] for alt in m.group(1).split(",")} if m else {r}
    missing = sorted(r for r in expanded if not (REPO / r).exists())
    assert not missing, f"docs/deploy.md references files that do not exist: {missing}"
    for must in [
        "k8s/storage",
        "k8s/cluster",
        "k8s/base",
        "k8s/overlays/small",
        "k8s/overlays/large",
        "cluster/aws.yaml",
        "cluster/gcp.yaml",
        "cluster/Dockerfile",
    ]:
        assert must in text, f"docs/deploy.md does not explain {must}"
