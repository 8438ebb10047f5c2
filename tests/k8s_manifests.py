"""Kubernetes manifests as the deployment tests see them: strict YAML, kustomize rendering, CRD schemas.

No cluster is needed. Three pieces:

* :func:`load_documents` reads YAML and refuses duplicate keys (PyYAML silently keeps the last one, the
  API server would reject or misread the manifest).
* :func:`render_kustomization` renders the subset of kustomize this repository uses — ``resources``
  (files or directories) and JSON6902 ``patches`` with a ``target`` — and refuses every other key, so a
  kustomization that this renderer cannot reproduce fails loudly instead of being validated half-way.
* :class:`CrdValidator` validates a custom resource against a CRD's ``openAPIV3Schema`` after translating
  the Kubernetes extensions to plain JSON Schema. Structural schemas drop or reject unknown fields, so every
  object schema that declares ``properties`` (and is not ``x-kubernetes-preserve-unknown-fields``) gets
  ``additionalProperties: false``: a misspelt field is an error here, as it is for ``kubectl apply``
  with server-side field validation.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import jsonpatch
import jsonschema
import yaml

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "patches"}
"""Keys :func:`render_kustomization` implements; any other kustomization key is an error."""

# ObjectMeta fields a manifest may carry (k8s.io/apimachinery ObjectMeta); the CRDs only say `type: object`.
_OBJECT_META_FIELDS = (
    "name generateName namespace selfLink uid resourceVersion generation creationTimestamp "
    "deletionTimestamp deletionGracePeriodSeconds labels annotations ownerReferences finalizers managedFields"
).split()
_DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that raises on a duplicate mapping key."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_documents(path: Path) -> list[dict[str, Any]]:
    """All non-empty YAML documents of ``path``; duplicate keys raise ``yaml.YAMLError`` naming the line."""
    with open(path) as f:
        docs = [d for d in yaml.load_all(f, Loader=_StrictLoader) if d is not None]
    for i, d in enumerate(docs):
        if not isinstance(d, dict):
            raise ValueError(f"{path}: document {i} is a {type(d).__name__}, expected a mapping")
    return docs


def _matches(doc: dict[str, Any], target: dict[str, Any]) -> bool:
    api_version = doc.get("apiVersion", "")
    group, _, version = api_version.rpartition("/")
    wanted = {
        "kind": doc.get("kind"),
        "name": doc.get("metadata", {}).get("name"),
        "group": group,
        "version": version,
        "namespace": doc.get("metadata", {}).get("namespace"),
    }
    unknown = set(target) - set(wanted)
    if unknown:
        raise ValueError(
            f"patch target keys {sorted(unknown)} are not supported (use kind/name/group/version)"
        )
    return all(wanted[k] == v for k, v in target.items())


def render_kustomization(directory: Path) -> list[dict[str, Any]]:
    """Render ``directory/kustomization.yaml`` like ``kubectl kustomize`` would, for the supported subset.

    Resources are rendered depth-first in listed order; each JSON6902 patch must match at least one
    resource (a patch that silently applies to nothing is a bug in the overlay).
    """
    directory = Path(directory)
    kfile = directory / "kustomization.yaml"
    (k,) = load_documents(kfile)
    extra = set(k) - KUSTOMIZATION_KEYS
    if extra:
        raise ValueError(
            f"{kfile}: keys {sorted(extra)} are not implemented by this renderer; "
            f"supported: {sorted(KUSTOMIZATION_KEYS)}"
        )
    if k.get("kind") != "Kustomization":
        raise ValueError(f"{kfile}: kind is {k.get('kind')!r}, expected 'Kustomization'")
    out: list[dict[str, Any]] = []
    for res in k.get("resources", []):
        p = directory / res
        out.extend(render_kustomization(p) if p.is_dir() else load_documents(p))
    for i, entry in enumerate(k.get("patches", [])):
        where = f"{kfile}: patches[{i}]"
        if set(entry) - {"target", "patch", "path"} or "target" not in entry:
            raise ValueError(f"{where}: expected 'target' and one of 'patch'/'path', got {sorted(entry)}")
        text = entry["patch"] if "patch" in entry else (directory / entry["path"]).read_text()
        ops = yaml.load(text, Loader=_StrictLoader)
        if not isinstance(ops, list):
            raise ValueError(f"{where}: only JSON6902 patches (a list of operations) are supported")
        hits = [j for j, d in enumerate(out) if _matches(d, entry["target"])]
        if not hits:
            raise ValueError(f"{where}: target {entry['target']} matches no resource")
        for j in hits:
            try:
                out[j] = jsonpatch.JsonPatch(ops).apply(out[j])
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                raise ValueError(f"{where}: {e}") from e
    return out


def _structural(node: Any) -> Any:
    """Translate one CRD schema node (recursively) to JSON Schema with unknown fields rejected."""
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key == "properties":  # a map of field name -> schema, not a schema itself
            out[key] = {name: _structural(s) for name, s in value.items()}
        else:
            out[key] = _structural(value)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


@dataclass(frozen=True)
class Violation:
    """One schema error: JSON path of the offending value and the validator's message."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class CrdValidator:
    """Validates custom resources of one CRD version (``kind`` and ``apiVersion`` are fixed by the CRD)."""

    def __init__(self, crd_path: Path, version: str = "v1") -> None:
        with open(crd_path) as f:
            crd = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        versions = {v["name"]: v for v in crd["spec"]["versions"]}
        if version not in versions:
            raise ValueError(f"{crd_path}: no version {version!r}; has {sorted(versions)}")
        self.kind: str = crd["spec"]["names"]["kind"]
        self.api_version = f"{crd['spec']['group']}/{version}"
        schema = _structural(versions[version]["schema"]["openAPIV3Schema"])
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
        schema["properties"]["apiVersion"] = {"const": self.api_version}
        schema["properties"]["kind"] = {"const": self.kind}
        schema["properties"]["metadata"] = {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                **{f: {} for f in _OBJECT_META_FIELDS},
                # KubeRay derives service and pod names from it, so it must be a DNS-1123 label.
                "name": {"type": "string", "pattern": _DNS1123_LABEL},
                "namespace": {"type": "string", "pattern": _DNS1123_LABEL},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
        jsonschema.Draft7Validator.check_schema(schema)
        self._validator = jsonschema.Draft7Validator(schema)

    def violations(self, doc: dict[str, Any]) -> list[Violation]:
        """Every schema violation of ``doc``, sorted by path (empty when valid)."""
        errs = sorted(self._validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
        return [Violation(e.json_path, e.message) for e in errs]


@cache
def crd_validators(crd_dir: Path) -> dict[str, CrdValidator]:
    """``kind → validator`` for every ``*.yaml`` CRD in ``crd_dir`` (parsed once per session)."""
    validators = [CrdValidator(p) for p in sorted(Path(crd_dir).glob("*.yaml"))]
    return {v.kind: v for v in validators}


def pod_templates(resource: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(role, pod template)`` for the head and every worker group of a RayCluster/RayJob (and submitter)."""
    spec = resource["spec"]
    cluster = spec.get("rayClusterSpec", spec) if resource["kind"] == "RayJob" else spec
    if "headGroupSpec" in cluster:
        yield "head", cluster["headGroupSpec"]["template"]
        for group in cluster.get("workerGroupSpecs", []):
            yield f"worker:{group['groupName']}", group["template"]
    if "submitterPodTemplate" in spec:
        yield "submitter", spec["submitterPodTemplate"]


_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SUFFIX: dict[str | None, Fraction] = {None: Fraction(1), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6)}
_SUFFIX |= {"m": Fraction(1, 1000)} | {s: Fraction(1000**i) for i, s in enumerate("kMGTPE", 1)}
_SUFFIX |= {f"{s}i": Fraction(1024**i) for i, s in enumerate("KMGTPE", 1)}


def parse_quantity(q: str | int | float) -> Fraction:
    """A Kubernetes resource quantity (``"500m"``, ``"16Gi"``, ``4``) as an exact number of base units."""
    m = _QUANTITY.match(str(q))
    if not m:
        raise ValueError(f"not a Kubernetes quantity: {q!r}")
    return Fraction(m.group(1)) * _SUFFIX[m.group(2)]


def with_change(doc: dict[str, Any], pointer: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``doc`` with the JSON pointer ``pointer`` added/replaced by ``value``."""
    return jsonpatch.JsonPatch([{"op": "add", "path": pointer, "value": value}]).apply(copy.deepcopy(doc))
