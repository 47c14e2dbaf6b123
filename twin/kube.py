"""A small REST client for the twin's own controllers (not for the collection: it uses kubernetes.core).

The controllers need list, watch, create, patch and subresources on arbitrary kinds, fast and with
no discovery round trips; urllib3 with the twin's client certificate does exactly that.
"""

import json
import threading
import urllib.parse

import urllib3


class ApiError(Exception):
    def __init__(self, status, body, method, path):
        self.status = status
        self.body = body
        try:
            self.message = json.loads(body).get("message", body)
        except ValueError:
            self.message = body
        super().__init__(f"{method} {path}: {status} {self.message}")


def path(api_version, plural, name=None, namespace=None, subresource=None):
    """REST path for a kind: ``path('v1', 'pods', 'p', 'ns', 'log')``."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    if name:
        base += f"/{name}"
    if subresource:
        base += f"/{subresource}"
    return base


class Kube:
    def __init__(self, server, ca_file, cert_file, key_file, user_agent="confidential-gpu-twin"):
        self.server = server.rstrip("/")
        self.pool = urllib3.PoolManager(
            num_pools=4, maxsize=32, cert_reqs="CERT_REQUIRED", ca_certs=str(ca_file),
            cert_file=str(cert_file), key_file=str(key_file),
            headers={"User-Agent": user_agent, "Accept": "application/json"},
        )
        self._lock = threading.Lock()

    def request(self, method, p, body=None, params=None, content_type="application/json", timeout=30):
        url = self.server + p
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        data = None
        headers = {}
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            headers["Content-Type"] = content_type
        resp = self.pool.request(method, url, body=data, headers=headers, timeout=timeout, retries=False)
        if resp.status >= 400:
            raise ApiError(resp.status, resp.data.decode("utf-8", "replace"), method, p)
        if not resp.data:
            return None
        if resp.headers.get("Content-Type", "").startswith("application/json"):
            return json.loads(resp.data)
        return resp.data.decode("utf-8", "replace")

    def get(self, p, **params):
        return self.request("GET", p, params=params)

    def get_or_none(self, p):
        try:
            return self.get(p)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, p, **params):
        return self.get(p, **params)

    def create(self, p, body, **params):
        return self.request("POST", p, body, params=params)

    def create_or_get(self, p, body):
        """Create; on 409 return the existing object (seeding is idempotent)."""
        try:
            return self.create(p, body)
        except ApiError as exc:
            if exc.status != 409:
                raise
            return self.get(f"{p}/{body['metadata']['name']}")

    def merge_patch(self, p, body):
        return self.request("PATCH", p, body, content_type="application/merge-patch+json")

    def json_patch(self, p, ops):
        return self.request("PATCH", p, ops, content_type="application/json-patch+json")

    def apply(self, p, body, manager="confidential-gpu-twin", force=True):
        """Server-side apply (the CSV-size-safe way to load big CRDs)."""
        return self.request("PATCH", p, body, params={"fieldManager": manager, "force": str(force).lower()},
                            content_type="application/apply-patch+yaml")

    def replace(self, p, body):
        return self.request("PUT", p, body)

    def delete(self, p, **params):
        try:
            return self.request("DELETE", p, params=params)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def watch(self, p, resource_version=None, timeout_seconds=300, **params):
        """Yield (type, object) events until the server ends the watch.

        An ERROR event (e.g. 410 Gone) is yielded as is; the caller re-lists.
        """
        query = {k: v for k, v in params.items() if v is not None}
        query.update(watch="true", allowWatchBookmarks="true", timeoutSeconds=timeout_seconds)
        if resource_version:
            query["resourceVersion"] = resource_version
        url = self.server + p + "?" + urllib.parse.urlencode(query)
        resp = self.pool.request("GET", url, preload_content=False, retries=False,
                                 timeout=urllib3.Timeout(connect=10, read=timeout_seconds + 30))
        try:
            if resp.status >= 400:
                raise ApiError(resp.status, resp.read().decode("utf-8", "replace"), "WATCH", p)
            buffer = b""
            for chunk in resp.stream(4096, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        event = json.loads(line)
                        yield event["type"], event["object"]
        finally:
            resp.release_conn()
