# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one place that imports kubernetes.core: connection options, client, service and errors.

PRIVATE to this collection. Every module of the collection builds on :class:`CgpuModule`, so the
connection behaves exactly as in kubernetes.core (module params, then ``K8S_AUTH_*``, then
in-cluster, then kubeconfig) and nothing of kubernetes.core is copied.
"""

from __future__ import annotations

import copy
import queue
import time
import traceback

try:
    from ansible_collections.kubernetes.core.plugins.module_utils.ansiblemodule import AnsibleModule
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import (
        CoreException,
        ResourceTimeout,
    )
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.runner import perform_action
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.service import (
        K8sService,
        diff_objects,
    )

    HAS_KUBERNETES_COLLECTION = True
    KUBERNETES_COLLECTION_IMPORT_ERROR = None
except ImportError:
    HAS_KUBERNETES_COLLECTION = False
    KUBERNETES_COLLECTION_IMPORT_ERROR = traceback.format_exc()
    from ansible.module_utils.basic import AnsibleModule

    AUTH_ARG_SPEC = {}
    AnsibleK8SModule = object

    class CoreException(Exception):  # type: ignore[no-redef]
        pass

    class ResourceTimeout(CoreException):  # type: ignore[no-redef]
        def __init__(self, message="", result=None):
            self.result = result or {}
            super().__init__(message)

try:
    from kubernetes.dynamic.exceptions import ApiException, DynamicApiError, NotFoundError
except ImportError:  # reported by AnsibleK8SModule's own requirement check
    ApiException = DynamicApiError = NotFoundError = Exception


__all__ = [
    "AUTH_ARG_SPEC",
    "CgpuModule",
    "CoreException",
    "ResourceTimeout",
    "api_error_message",
    "diff_objects",
]


def api_error_message(exc) -> str:
    """The API server's own words for a failed request (status, reason and message)."""
    body = getattr(exc, "body", None)
    status = getattr(exc, "status", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    message = body
    try:
        import json

        message = json.loads(body).get("message", body)
    except Exception:  # pylint: disable=broad-except
        pass
    if status:
        return "{0} ({1})".format(message or getattr(exc, "reason", ""), status)
    return str(exc)


class CgpuModule(AnsibleK8SModule):
    """Base of every confidential.gpu module that talks to a cluster.

    Subclasses implement :meth:`execute_module`. API errors surface as :class:`CoreException`
    and end in ``fail_json`` with the API server's message.
    """

    def __init__(self, argument_spec, **kwargs):
        if not HAS_KUBERNETES_COLLECTION:
            AnsibleModule(argument_spec=argument_spec, **kwargs).fail_json(
                msg="The kubernetes.core collection (>=5.0.0) must be installed to use this module",
                exception=KUBERNETES_COLLECTION_IMPORT_ERROR,
            )
        spec = copy.deepcopy(AUTH_ARG_SPEC)
        spec.update(argument_spec)
        kwargs.setdefault("supports_check_mode", True)
        super().__init__(module_class=AnsibleModule, argument_spec=spec, **kwargs)
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = get_api_client(module=self)
        return self._client

    @property
    def svc(self):
        return K8sService(self.client, self)

    # -- reads -------------------------------------------------------------------------------

    def resource(self, api_version, kind, fail=False):
        """The API resource for kind, or None when the cluster does not serve it."""
        return self.svc.find_resource(kind, api_version, fail=fail)

    def get(self, api_version, kind, name, namespace=None):
        """One object as a dict, or None when it (or its API) does not exist."""
        resource = self.resource(api_version, kind)
        if resource is None:
            return None
        try:
            return self.client.get(resource, name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None
        except (ApiException, DynamicApiError) as exc:
            raise CoreException(
                "Failed to read {0} {1}: {2}".format(kind, _ref(name, namespace), api_error_message(exc))
            )

    def list(self, api_version, kind, namespace=None, label_selector=None):
        """(items, api_found): all objects of a kind; api_found is False when it is not served."""
        resource = self.resource(api_version, kind)
        if resource is None:
            return [], False
        try:
            found = self.client.get(resource, namespace=namespace, label_selector=label_selector)
        except (ApiException, DynamicApiError) as exc:
            raise CoreException("Failed to list {0}: {1}".format(kind, api_error_message(exc)))
        return list(found.to_dict().get("items", [])), True

    # -- writes ------------------------------------------------------------------------------

    def ensure(self, definition, state="present"):
        """Create or update one object like kubernetes.core.k8s does (check mode and diff included)."""
        params = {"state": state, "apply": False, "force": False, "wait": False}
        return perform_action(self.svc, copy.deepcopy(definition), params)

    # -- waiting -----------------------------------------------------------------------------

    def watch_until(self, api_version, kind, condition, timeout, what,
                    namespace=None, label_selector=None, field_selector=None):
        """Watch a kind until ``condition(objects)`` is satisfied, or fail at the deadline.

        ``condition`` gets a dict ``{(namespace, name): object}`` of everything that matches and
        returns ``(done, seen)``; ``seen`` is the one-line description of the state, kept for the
        error message. Lists once, then follows the API's watch from that resourceVersion; a
        watch that expires is re-listed, never polled.
        """
        resource = self.resource(api_version, kind, fail=True)
        deadline = time.monotonic() + timeout
        seen = "nothing yet"
        while True:
            listing = self.client.get(resource, namespace=namespace, label_selector=label_selector,
                                      field_selector=field_selector).to_dict()
            objects = {_key(o): o for o in listing.get("items", [])}
            done, seen = condition(objects)
            if done:
                return objects
            version = listing["metadata"].get("resourceVersion")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CoreException("Timed out after {0}s waiting for {1}; last seen: {2}".format(timeout, what, seen))
            try:
                for event in self.client.client.watch(
                    resource, namespace=namespace, label_selector=label_selector,
                    field_selector=field_selector, resource_version=version,
                    timeout=max(1, int(remaining)),
                ):
                    obj = event["raw_object"]
                    if event["type"] == "ERROR":
                        break  # e.g. 410 Gone: start over with a fresh list
                    if event["type"] == "DELETED":
                        objects.pop(_key(obj), None)
                    else:
                        objects[_key(obj)] = obj
                    done, seen = condition(objects)
                    if done:
                        return objects
                    if time.monotonic() >= deadline:
                        break
            except (ApiException, DynamicApiError) as exc:
                if getattr(exc, "status", None) != 410:
                    raise CoreException("Watching {0} failed: {1}".format(kind, api_error_message(exc)))
            if time.monotonic() >= deadline:
                raise CoreException("Timed out after {0}s waiting for {1}; last seen: {2}".format(timeout, what, seen))

    def watch_into(self, api_version, kind, events, stop, deadline):
        """Put ``kind`` on the ``events`` queue at every change of that kind until ``stop`` or the deadline.

        For waits that follow several kinds at once (one thread per kind): the waiter re-reads the
        state when anything arrives. A failed watch puts a CoreException on the queue instead.
        """
        resource = self.resource(api_version, kind, fail=True)
        while not stop.is_set():
            try:
                version = self.client.client.get(resource).to_dict()["metadata"].get("resourceVersion")
                events.put(kind)  # something may have changed between our read and this list
                for event in self.client.client.watch(resource, resource_version=version,
                                                      timeout=max(1, min(300, int(deadline - time.monotonic())))):
                    if stop.is_set():
                        return
                    if event["type"] == "ERROR":
                        break
                    events.put(kind)
            except Exception as exc:  # pylint: disable=broad-except
                if getattr(exc, "status", None) == 410:
                    continue
                if not stop.is_set():
                    events.put(CoreException("Watching {0} failed: {1}".format(kind, exc)))
                return
            if time.monotonic() >= deadline:
                return

    @staticmethod
    def next_burst(events, timeout):
        """Wait up to ``timeout`` seconds for what ``watch_into`` puts on ``events``, then take the whole burst.

        True when something changed (the waiter re-reads the state once for the burst), False when
        nothing came in time; a failed watch's CoreException is raised.
        """
        try:
            item = events.get(timeout=max(0.1, timeout))
        except queue.Empty:
            return False
        while True:
            if isinstance(item, Exception):
                raise item
            try:
                item = events.get_nowait()
            except queue.Empty:
                return True

    # -- running -----------------------------------------------------------------------------

    def execute_module(self):
        raise NotImplementedError

    def run(self):
        try:
            self.execute_module()
        except CoreException as exc:
            self.fail_from_exception(exc)


def _key(obj):
    meta = obj.get("metadata", {})
    return meta.get("namespace"), meta.get("name")


def _ref(name, namespace):
    return "{0}/{1}".format(namespace, name) if namespace else str(name)
