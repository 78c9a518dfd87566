"""A tiny fake Kubernetes API server that enforces an RBAC Role, for running the real kubectl.

It serves discovery, one Deployment with two revisions (two ReplicaSets) and accepts PATCH on
the Deployment. Every resource request is authorized against the Role's rules the way the
API server's RBAC authorizer does (apiGroup, resource, verb, resourceNames) and answered
403 Forbidden when no rule allows it, so a kubectl command succeeds only if the Role grants
everything the command needs. ``requests`` records (verb, resource, name) of each call.
"""

from __future__ import annotations

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
            "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
                "name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}]},
            "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {**resource, "name": "pods", "singularName": "pod", "kind": "Pod"}]},
            "/apis/apps/v1": {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1",
                              "resources": [
                                  {**resource, "name": "deployments", "singularName": "deployment",
                                   "kind": "Deployment", "shortNames": ["deploy"]},
                                  {**resource, "name": "replicasets", "singularName": "replicaset",
                                   "kind": "ReplicaSet", "shortNames": ["rs"]}]},
        }.get(path)

    def handle(self, method: str, url: str, body: bytes) -> tuple[int, dict]:
        parsed = urlparse(url)
        path = parsed.path.rstrip("/")
        found = self.discovery(path)
        if found is not None and method == "GET":
            return 200, found
        prefix = f"/apis/apps/v1/namespaces/{self.namespace}/"
        if not path.startswith(prefix):
            return 404, _status(404, "NotFound", f"{path} not found")
        parts = path[len(prefix):].split("/")
        resource, name = parts[0], parts[1] if len(parts) > 1 else ""
        query = parse_qs(parsed.query)
        if method == "GET":
            verb = "watch" if query.get("watch") == ["true"] else ("get" if name else "list")
        else:
            verb = method.lower()
        self.requests.append((verb, resource, name))
        if not self.allowed(verb, "apps", resource, name):
            self.denied.append((verb, resource, name))
            return 403, _status(403, "Forbidden",
                                f'{resource} "{name}" is forbidden: cannot {verb} resource "{resource}" '
                                f'in API group "apps" in the namespace "{self.namespace}"')
        if resource == "deployments" and name == self.name:
            if verb == "patch":
                self.patches.append(json.loads(body))
            return 200, self.deployment
        if resource == "replicasets" and verb == "list":
            return 200, self.replicasets()
        return 404, _status(404, "NotFound", f"{resource} {name!r} not found")


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
            "message": message, "code": code}


def serve(cluster: FakeCluster) -> tuple[ThreadingHTTPServer, str]:
    """Start the fake API server on a free loopback port; return (server, URL). Call shutdown()."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            code, obj = cluster.handle(self.command, self.path, self.rfile.read(length) if length else b"")
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
