"""A tiny fake Kubernetes API server that enforces an RBAC Role, for running the real kubectl.

It serves discovery, one Deployment with two revisions (two ReplicaSets) and accepts PATCH on
the Deployment. Other objects can be added (``add``): Ingresses, Gateway API HTTPRoutes and
more Deployments, which answer GET and PATCH (merge and JSON patch, applied to the stored
object) and, for Deployments, the ``scale`` subresource. Every resource request is authorized
against the Role's rules the way the API server's RBAC authorizer does (apiGroup, resource,
verb, resourceNames) and answered 403 Forbidden when no rule allows it, so a kubectl command
succeeds only if the Role grants everything the command needs. ``requests`` records (verb,
resource, name) of each call.
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

DEPLOYMENT_UID = "6f1c1c8e-0000-4000-8000-000000000001"


def _template(image: str) -> dict:
    return {"metadata": {"labels": {"app": "recoveryos"}},
            "spec": {"containers": [{"name": "app", "image": image}]}}


class FakeCluster:
    def __init__(self, namespace: str, deployment: str, rules: list[dict]):
        self.namespace = namespace
        self.name = deployment
        self.rules = rules
        self.requests: list[tuple[str, str, str]] = []
        self.denied: list[tuple[str, str, str]] = []
        self.patches: list[object] = []
        self.objects: dict[tuple[str, str], dict] = {}  # (resource, name) -> object
        # (resource, name, content type, patch) of every PATCH applied to an added object
        self.changes: list[tuple[str, str, str, object]] = []
        self.lock = threading.Lock()
        self.fail_next: dict[tuple[str, str], int] = {}  # (resource, name) -> 500s to answer first
        self.deployment = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": deployment, "namespace": namespace, "uid": DEPLOYMENT_UID,
                         "resourceVersion": "2", "generation": 2,
                         "annotations": {"deployment.kubernetes.io/revision": "2"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "recoveryos"}},
                     "template": _template("recoveryos:2.0-canary")},
            "status": {},
        }

    def replicasets(self) -> dict:
        items = []
        for rev, image in ((1, "recoveryos:1.9"), (2, "recoveryos:2.0-canary")):
            template = _template(image)
            template["metadata"]["labels"]["pod-template-hash"] = f"hash{rev}"
            items.append({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{self.name}-hash{rev}", "namespace": self.namespace,
                    "uid": f"6f1c1c8e-0000-4000-8000-00000000010{rev}",
                    "annotations": {"deployment.kubernetes.io/revision": str(rev)},
                    "labels": {"app": "recoveryos", "pod-template-hash": f"hash{rev}"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": self.name,
                                         "uid": DEPLOYMENT_UID, "controller": True}],
                },
                "spec": {"replicas": 1 if rev == 2 else 0,
                         "selector": {"matchLabels": template["metadata"]["labels"]},
                         "template": template},
            })
        return {"apiVersion": "apps/v1", "kind": "ReplicaSetList", "metadata": {"resourceVersion": "2"},
                "items": items}

    def add(self, obj: dict) -> dict:
        """Serve another object (Ingress, HTTPRoute, Deployment) in the namespace."""
        kind = obj["kind"]
        resource = {"Ingress": "ingresses", "HTTPRoute": "httproutes", "Deployment": "deployments"}[kind]
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", self.namespace)
        meta.setdefault("uid", f"6f1c1c8e-0000-4000-8000-{len(self.objects) + 200:012d}")
        meta.setdefault("resourceVersion", "1")
        self.objects[(resource, meta["name"])] = obj
        return obj

    def get(self, resource: str, name: str) -> dict:
        with self.lock:
            return copy.deepcopy(self.objects[(resource, name)])

    def allowed(self, verb: str, group: str, resource: str, name: str) -> bool:
        for rule in self.rules:
            if group not in rule.get("apiGroups", []) and "*" not in rule.get("apiGroups", []):
                continue
            if resource not in rule.get("resources", []) and "*" not in rule.get("resources", []):
                continue
            if verb not in rule.get("verbs", []) and "*" not in rule.get("verbs", []):
                continue
            names = rule.get("resourceNames") or []
            if names and name not in names:
                continue
            return True
        return False

    # -- HTTP -----------------------------------------------------------------------------

    def discovery(self, path: str) -> dict | None:
        resource = {"namespaced": True, "kind": "", "verbs": ["get", "list", "patch", "watch"]}
        return {
            "/version": {"major": "1", "minor": "32", "gitVersion": "v1.32.0"},
            "/api": {"kind": "APIVersions", "versions": ["v1"],
                     "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                     "serverAddress": "127.0.0.1"}]},
            "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": group, "versions": [{"groupVersion": f"{group}/v1", "version": "v1"}],
                 "preferredVersion": {"groupVersion": f"{group}/v1", "version": "v1"}}
                for group in GROUPS]},
            "/apis/networking.k8s.io/v1": {
                "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "networking.k8s.io/v1",
                "resources": [{**resource, "name": "ingresses", "singularName": "ingress",
                               "kind": "Ingress", "shortNames": ["ing"]}]},
            "/apis/gateway.networking.k8s.io/v1": {
                "kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": "gateway.networking.k8s.io/v1",
                "resources": [{**resource, "name": "httproutes", "singularName": "httproute",
                               "kind": "HTTPRoute"}]},
            "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {**resource, "name": "pods", "singularName": "pod", "kind": "Pod"}]},
            "/apis/apps/v1": {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1",
                              "resources": [
                                  {**resource, "name": "deployments", "singularName": "deployment",
                                   "kind": "Deployment", "shortNames": ["deploy"]},
                                  {**resource, "name": "replicasets", "singularName": "replicaset",
                                   "kind": "ReplicaSet", "shortNames": ["rs"]},
                                  {"name": "deployments/scale", "namespaced": True, "kind": "Scale",
                                   "group": "autoscaling", "version": "v1",
                                   "verbs": ["get", "patch", "update"]}]},
        }.get(path)

    def handle(self, method: str, url: str, body: bytes, content_type: str = "") -> tuple[int, dict]:
        parsed = urlparse(url)
        path = parsed.path.rstrip("/")
        found = self.discovery(path)
        if found is not None and method == "GET":
            return 200, found
        ns = f"/v1/namespaces/{self.namespace}/"
        group = next((g for g in GROUPS if path.startswith(f"/apis/{g}{ns}")), None)
        if group is None:
            return 404, _status(404, "NotFound", f"{path} not found")
        prefix = f"/apis/{group}/v1/namespaces/{self.namespace}/"
        parts = path[len(prefix):].split("/")
        resource, name = parts[0], parts[1] if len(parts) > 1 else ""
        sub = parts[2] if len(parts) > 2 else ""
        query = parse_qs(parsed.query)
        if method == "GET":
            verb = "watch" if query.get("watch") == ["true"] else ("get" if name else "list")
        else:
            verb = method.lower()
        rbac_resource = f"{resource}/{sub}" if sub else resource
        self.requests.append((verb, rbac_resource, name))
        if not self.allowed(verb, group, rbac_resource, name):
            self.denied.append((verb, rbac_resource, name))
            return 403, _status(403, "Forbidden",
                                f'{rbac_resource} "{name}" is forbidden: cannot {verb} resource '
                                f'"{rbac_resource}" in API group "{group}" in the namespace '
                                f'"{self.namespace}"')
        if (resource, name) in self.objects:
            return self._object(verb, resource, name, sub, body, content_type)
        if resource == "deployments" and name == self.name and not sub:
            if verb == "patch":
                self.patches.append(json.loads(body))
            return 200, self.deployment
        if resource == "replicasets" and verb == "list":
            return 200, self.replicasets()
        return 404, _status(404, "NotFound", f"{resource} {name!r} not found")

    def _object(self, verb: str, resource: str, name: str, sub: str, body: bytes,
                content_type: str) -> tuple[int, dict]:
        with self.lock:
            if self.fail_next.get((resource, name)):
                self.fail_next[(resource, name)] -= 1
                return 500, _status(500, "InternalError", "injected failure")
            obj = self.objects[(resource, name)]
            if sub and (resource, sub) != ("deployments", "scale"):
                return 404, _status(404, "NotFound", f"{resource}/{sub} not found")
            if verb == "patch":
                patch = json.loads(body)
                target = {"spec": {"replicas": obj["spec"].get("replicas", 1)}} if sub else obj
                try:
                    if "json-patch" in content_type:
                        target = json_patch(target, patch)
                    elif "merge-patch" in content_type or "strategic-merge-patch" in content_type:
                        target = merge_patch(target, patch)
                    else:
                        return 415, _status(415, "UnsupportedMediaType", content_type)
                except PatchFailed as err:
                    return 422, _status(422, "Invalid", str(err))
                self.changes.append((f"{resource}/{sub}" if sub else resource, name, content_type, patch))
                if sub:
                    obj["spec"]["replicas"] = target["spec"]["replicas"]
                else:
                    self.objects[(resource, name)] = obj = target
                meta = obj["metadata"]
                meta["resourceVersion"] = str(int(meta.get("resourceVersion", "1")) + 1)
            elif verb != "get":
                return 405, _status(405, "MethodNotAllowed", verb)
            if sub:
                return 200, {"kind": "Scale", "apiVersion": "autoscaling/v1",
                             "metadata": {"name": name, "namespace": self.namespace,
                                          "resourceVersion": obj["metadata"]["resourceVersion"]},
                             "spec": {"replicas": obj["spec"].get("replicas", 1)},
                             "status": {"replicas": obj["spec"].get("replicas", 1)}}
            return 200, copy.deepcopy(obj)


GROUPS = ("apps", "networking.k8s.io", "gateway.networking.k8s.io")


class PatchFailed(Exception):
    pass


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def json_patch(target, ops: list[dict]):
    """RFC 6902 JSON patch: test, add, replace, remove (what the rollout sends)."""
    doc = copy.deepcopy(target)
    for op in ops:
        keys = [k.replace("~1", "/").replace("~0", "~") for k in op["path"].split("/")[1:]]
        parent = doc
        try:
            for key in keys[:-1]:
                parent = parent[int(key)] if isinstance(parent, list) else parent[key]
            last = keys[-1]
            if isinstance(parent, list):
                last = len(parent) if last == "-" else int(last)
            if op["op"] == "test":
                if parent[last] != op["value"]:
                    raise PatchFailed(f"test failed at {op['path']}: {parent[last]!r} != {op['value']!r}")
            elif op["op"] in ("add", "replace"):
                if op["op"] == "replace":
                    parent[last]  # noqa: B018  (must exist)
                if isinstance(parent, list) and op["op"] == "add":
                    parent.insert(last, op["value"])
                else:
                    parent[last] = op["value"]
            elif op["op"] == "remove":
                del parent[last]
            else:
                raise PatchFailed(f"unsupported op {op['op']!r}")
        except (KeyError, IndexError, ValueError, TypeError) as err:
            raise PatchFailed(f"path {op['path']}: {err!r}") from None
    return doc


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
            "message": message, "code": code}


def serve(cluster: FakeCluster) -> tuple[ThreadingHTTPServer, str]:
    """Start the fake API server on a free loopback port; return (server, URL). Call shutdown()."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            code, obj = cluster.handle(self.command, self.path, self.rfile.read(length) if length else b"",
                                       self.headers.get("Content-Type", ""))
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PATCH = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
