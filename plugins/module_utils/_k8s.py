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
import threading
import time
import traceback

from ansible.module_utils.common.dict_transformations import dict_merge

try:
    from ansible_collections.kubernetes.core.plugins.module_utils.ansiblemodule import AnsibleModule
    from ansible_collections.kubernetes.core.plugins.module_utils.apply import annotate
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC, WAIT_ARG_SPEC
    from ansible_collections.kubernetes.core.plugins.module_utils.common import _encode_stringdata
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

    annotate = _encode_stringdata = None
    AUTH_ARG_SPEC = {}
    WAIT_ARG_SPEC = {}
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

try:
    from urllib3.exceptions import HTTPError as TransportError
except ImportError:  # urllib3 comes with the kubernetes client
    TransportError = OSError

# A wait re-connects after errors a short API outage gives (an API server restarting, a load balancer
# failing over): first after BACKOFF_FIRST seconds, doubling up to BACKOFF_MAX, until its deadline.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 8.0
# A line at least this often while a wait sees nothing new, so an hour of rollout is never silent.
HEARTBEAT_SECONDS = 30
# The options of kubernetes.core's k8s module that ensure() honours (kubernetes.core's service reads them).
K8S_OPTIONS = ("apply", "merge_type", "wait", "wait_condition", "wait_timeout", "wait_sleep")
# The longest one watch request stays open; the API server ends watches after 30-60 min anyway.
WATCH_SECONDS = 300


__all__ = [
    "AUTH_ARG_SPEC",
    "CgpuModule",
    "CoreException",
    "Informer",
    "ResourceTimeout",
    "WAIT_ARG_SPEC",
    "api_error_message",
    "diff_objects",
    "holds",
    "transient",
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


def holds(actual, desired) -> bool:
    """Whether ``actual`` already says all that ``desired`` says, so patching it with ``desired`` changes nothing.

    Maps are read as a merge patch reads them (a key absent from ``desired`` is left alone, a null one is a
    removal); lists must match item by item, as a merge patch replaces them whole. A strategic merge can
    leave a list alone that this judges changed; then the patch is sent and is a no-op, never the reverse.
    """
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            actual.get(key) is None if value is None else key in actual and holds(actual[key], value)
            for key, value in desired.items())
    if isinstance(desired, list):
        return (isinstance(actual, list) and len(actual) == len(desired)
                and all(holds(a, d) for a, d in zip(actual, desired)))
    if isinstance(desired, bool) or isinstance(actual, bool):  # JSON's true is not 1
        return actual is desired
    return actual == desired


def transient(exc) -> bool:
    """Whether a failed request is what a short API outage gives: no answer, a dropped connection, a 5xx or 429.

    Those are retried until the wait's deadline; anything else (403, 404, 422...) is an answer and ends it.
    """
    if isinstance(exc, (TransportError, ConnectionError, TimeoutError)):
        return True
    status = getattr(exc, "status", None)
    return isinstance(status, int) and (status >= 500 or status == 429)


def _outage_text(exc):
    """One line for an error of the transport (urllib3 nests the cause in its message)."""
    if getattr(exc, "status", None):
        return api_error_message(exc)
    reason = getattr(exc, "reason", None)
    return str(reason or exc).splitlines()[0][:200]


class Informer:
    """One kind's objects, kept from one list and the watch that follows it (client-go's reflector, small).

    ``objects`` maps ``(namespace, name)`` to the object as last seen. :meth:`run` (a thread of
    :meth:`CgpuModule.follow`) lists once and then follows the watch from the list's resourceVersion,
    putting what it learns on a queue; the waiting thread applies it with :meth:`apply`, so the cache
    is only ever touched by one thread. A BOOKMARK only moves the resourceVersion on; 410 Gone (the
    version was compacted away) lists again; an outage (see :func:`transient`) is retried with backoff
    until the deadline and then listed again; any other error ends the wait with the API's message.
    """

    def __init__(self, module, api_version, kind, namespace=None, label_selector=None, field_selector=None):
        self.module = module
        self.api_version, self.kind = api_version, kind
        self.namespace, self.label_selector, self.field_selector = namespace, label_selector, field_selector
        self.objects = {}
        self.synced = False
        self.outage = None  # (monotonic time it began, one line) while the API does not answer
        self.resource = None

    def describe(self):
        scope = [x for x in (self.namespace and "namespace " + self.namespace, self.label_selector,
                             self.field_selector) if x]
        return "{0}s{1}".format(self.kind, " ({0})".format(", ".join(scope)) if scope else "")

    def values(self):
        return list(self.objects.values())

    def _selectors(self):
        return {"namespace": self.namespace, "label_selector": self.label_selector,
                "field_selector": self.field_selector}

    def _failure(self, verb, exc):
        return CoreException("Cannot {0} {1}: {2}".format(verb, self.describe(), api_error_message(exc)))

    def run(self, out, stop, deadline, proceed=None):
        """Thread body: (informer, what, payload) tuples on ``out`` until ``stop`` or the deadline.

        With ``proceed`` (an Event), the first watch waits for it: a wait that is over at the first look
        (a re-run) then costs one list per kind and no watch.
        """
        version = None
        delay = BACKOFF_FIRST
        verb = "list"
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                if version is None:
                    verb = "list"
                    listing = self.module.client.get(self.resource, **self._selectors()).to_dict()
                    version = (listing.get("metadata") or {}).get("resourceVersion")
                    out.put((self, "SYNC", listing.get("items") or []))
                    delay = BACKOFF_FIRST
                if proceed is not None:
                    while not proceed.wait(1.0):
                        if stop.is_set() or time.monotonic() >= deadline:
                            return
                    if stop.is_set():
                        return
                verb = "watch"
                seconds = max(1, min(WATCH_SECONDS, int(deadline - time.monotonic())))
                for event in self.module.client.client.watch(self.resource, resource_version=version, timeout=seconds,
                                                             allow_watch_bookmarks=True, **self._selectors()):
                    if stop.is_set():
                        return
                    kind, obj = event.get("type"), event.get("raw_object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            version = None
                            break
                        raise self._failure(verb, ApiException(status=obj.get("code"), reason=obj.get("message")))
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if kind != "BOOKMARK":
                        out.put((self, kind, obj))
            except CoreException as exc:
                out.put((self, "FAILED", exc))
                return
            except Exception as exc:  # pylint: disable=broad-except
                if getattr(exc, "status", None) == 410:
                    version = None
                    continue
                if not transient(exc):
                    out.put((self, "FAILED", self._failure(verb, exc)))
                    return
                out.put((self, "OUTAGE", _outage_text(exc)))
                stop.wait(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, BACKOFF_MAX)
                version = None  # list again once the API answers: says at once that it is back

    def apply(self, what, payload):
        """Apply one message of :meth:`run` (in the waiting thread). True when the objects changed."""
        if what == "OUTAGE":
            self.outage = (self.outage or (time.monotonic(), None))[0], payload
            return False
        self.outage = None
        if what == "SYNC":
            self.objects = {_key(o): o for o in payload}
            self.synced = True
        elif what == "DELETED":
            self.objects.pop(_key(payload), None)
        else:
            self.objects[_key(payload)] = payload
        return True


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

    def list(self, api_version, kind, namespace=None, label_selector=None, field_selector=None):
        """(items, api_found): all objects of a kind that match; api_found is False when it is not served."""
        resource = self.resource(api_version, kind)
        if resource is None:
            return [], False
        try:
            found = self.client.get(resource, namespace=namespace, label_selector=label_selector,
                                    field_selector=field_selector)
        except (ApiException, DynamicApiError) as exc:
            raise CoreException("Failed to list {0}: {1}".format(kind, api_error_message(exc)))
        return list(found.to_dict().get("items", [])), True

    def pod_log(self, name, namespace, container=None):
        """The log of one container of a pod, as text."""
        resource = self.resource("v1", "Pod", fail=True)
        try:
            data = resource.log.get(name=name, namespace=namespace, container=container, serialize=False).data
        except (ApiException, DynamicApiError) as exc:
            raise CoreException("Failed to read the log of pod {0}: {1}".format(_ref(name, namespace),
                                                                                api_error_message(exc)))
        return data.decode("utf-8", "replace")

    # -- writes ------------------------------------------------------------------------------

    def ensure(self, definition, state="present", **options):
        """Create, update or delete one object through kubernetes.core's perform_action (check mode and diff included).

        Compared first: an object that already :func:`holds` the definition is not patched (kubernetes.core
        sends the patch and judges ``changed`` from its answer, so a re-run that changes nothing would still
        write); ``apply`` compares the last-applied annotation too, which is how it removes fields.
        kubernetes.core's own options decide how to write: ``apply``, ``merge_type`` (tried in order; its
        default is strategic-merge, then merge), ``wait`` with ``wait_condition``, ``wait_timeout`` and
        ``wait_sleep``. A module that declares them with kubernetes.core's specs (``WAIT_ARG_SPEC``, a
        list ``merge_type``) gets them from its task; ``options`` of one call take precedence.
        """
        params = {"state": state, "apply": False, "force": False, "wait": False}
        params.update({k: self.params[k] for k in self._k8s_options() if self.params.get(k) is not None})
        unknown = set(options) - set(K8S_OPTIONS)
        if unknown:
            raise TypeError("ensure() takes kubernetes.core's {0}, not {1}".format(
                ", ".join(K8S_OPTIONS), ", ".join(sorted(unknown))))
        params.update({k: v for k, v in options.items() if v is not None})
        if state != "absent" and not params["wait"]:
            existing = self._held(definition, params["apply"])
            if existing is not None:
                return {"changed": False, "method": "unchanged", "result": existing}
        service = K8sService(self.client, _CallView(self, dict(self.params, **params)))
        return perform_action(service, copy.deepcopy(definition), params)

    def _held(self, definition, apply):
        """The object as it is when it already holds ``definition`` (as ``apply`` would write it), else None."""
        meta = definition.get("metadata") or {}
        if not meta.get("name"):
            return None
        existing = self.get(definition["apiVersion"], definition["kind"], meta["name"], meta.get("namespace"))
        if existing is None:
            return None
        desired = _encode_stringdata(copy.deepcopy(definition))
        if apply:
            desired = dict_merge(desired, annotate(desired))  # as kubernetes.core's apply writes it
        return existing if holds(existing, desired) else None

    def _k8s_options(self):
        """kubernetes.core's options this module declares as kubernetes.core does (a same-named option of another meaning is not one)."""
        spec = self._module.argument_spec
        names = [k for k in WAIT_ARG_SPEC if spec.get(k) == WAIT_ARG_SPEC[k]]
        if (spec.get("merge_type") or {}).get("type") == "list":
            names.append("merge_type")
        return names

    def patch(self, api_version, kind, name, body, namespace=None, merge_type="merge"):
        """One patch, as given (no read first): for a change judged on an object just read. Dry run in check mode."""
        resource = self.resource(api_version, kind, fail=True)
        try:
            return self.client.patch(resource, body, name=name, namespace=namespace,
                                     content_type="application/{0}-patch+json".format(merge_type)).to_dict()
        except (ApiException, DynamicApiError) as exc:
            raise CoreException("Failed to patch {0} {1}: {2}".format(kind, _ref(name, namespace), api_error_message(exc)))

    def create(self, definition, exist_ok=False):
        """Create one object as given; with ``exist_ok`` one that is already there counts as created. Dry run in check mode."""
        meta = definition.get("metadata") or {}
        resource = self.resource(definition["apiVersion"], definition["kind"], fail=True)
        try:
            return self.client.create(resource, definition, namespace=meta.get("namespace")).to_dict()
        except (ApiException, DynamicApiError) as exc:
            if exist_ok and getattr(exc, "status", None) == 409:
                return None
            raise CoreException("Failed to create {0} {1}: {2}".format(
                definition["kind"], _ref(meta.get("name"), meta.get("namespace")), api_error_message(exc)))

    def delete(self, api_version, kind, name, namespace=None, grace_period_seconds=None):
        """Delete one object (in the background); False when it was not there. Dry run in check mode."""
        resource = self.resource(api_version, kind, fail=True)
        body = {"propagationPolicy": "Background"}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        try:
            self.client.delete(resource, name=name, namespace=namespace, body=body)
        except NotFoundError:
            return False
        except (ApiException, DynamicApiError) as exc:
            if getattr(exc, "status", None) == 404:
                return False
            raise CoreException("Failed to delete {0} {1}: {2}".format(kind, _ref(name, namespace), api_error_message(exc)))
        return True

    # -- waiting -----------------------------------------------------------------------------

    def informer(self, api_version, kind, namespace=None, label_selector=None, field_selector=None):
        """An :class:`Informer` of one kind, for :meth:`follow`; fails now when the cluster does not serve the kind."""
        found = Informer(self, api_version, kind, namespace=namespace, label_selector=label_selector,
                         field_selector=field_selector)
        found.resource = self.resource(api_version, kind, fail=True)
        return found

    def progress(self, line):
        """Say one line now: into the progress pipe the action plugin prints from (O(progress_file)), and into ``progress``."""
        if not hasattr(self, "_progress"):
            self._progress, self._progress_started, self._progress_stream = [], time.monotonic(), None
            path = self.params.get("progress_file")
            if path:
                try:
                    self._progress_stream = open(path, "w", buffering=1)  # pylint: disable=consider-using-with
                except OSError:
                    self._progress_stream = None
        entry = "{0:>5}s {1}".format(int(time.monotonic() - self._progress_started), line)
        self._progress.append(entry)
        if self._progress_stream is not None:
            try:
                self._progress_stream.write(entry + "\n")
            except OSError:  # the reader is gone (the task was interrupted): the lines stay in ``progress``
                self._progress_stream = None

    @property
    def progress_lines(self):
        return list(getattr(self, "_progress", []))

    def follow(self, informers, judge, timeout, what, heartbeat=HEARTBEAT_SECONDS, deadline=None, recheck=None):
        """Keep ``informers`` synced from one watch each and call ``judge()`` after each burst of changes until it is done.

        ``judge()`` reads the informers' ``objects`` and returns ``(done, line)``; it raises
        CoreException for a state upstream does not retry. Each new ``line`` is said with
        :meth:`progress`; while nothing new comes for ``heartbeat`` seconds, a line says what is awaited,
        what was seen last and whether the API answers. An API outage is retried until the deadline
        (``timeout`` seconds from now, or ``deadline`` in time.monotonic()); at the deadline CoreException
        says what was awaited and seen last. ``recheck()``, when given, returns the seconds after which
        ``judge()`` wants another look although nothing changed (a grace period running out), or None.
        Returns ``(done, line)``.
        """
        deadline = deadline if deadline is not None else time.monotonic() + timeout
        started = time.monotonic()
        events = queue.Queue()
        stop = threading.Event()
        proceed = threading.Event()  # set once the first look at the lists is not the end of the wait
        for informer in informers:
            threading.Thread(target=informer.run, args=(events, stop, deadline, proceed), daemon=True).start()
        line, said_at = "nothing yet", time.monotonic()
        wake_at = None
        try:
            while True:
                now = time.monotonic()
                changed = False
                try:
                    item = events.get(timeout=max(0.05, min(deadline, said_at + heartbeat,
                                                            wake_at or deadline) - now))
                except queue.Empty:
                    item = None
                if wake_at is not None and time.monotonic() >= wake_at:
                    changed, wake_at = True, None  # judge again: its clock ran out
                while item is not None:  # a burst: take it all, then judge once on the latest state
                    informer, kind, payload = item
                    if kind == "FAILED":
                        raise payload
                    down = informer.outage
                    changed = informer.apply(kind, payload) or changed
                    if kind == "OUTAGE" and not down:
                        self.progress("the API server does not answer the watch of {0} ({1}); retrying until the "
                                      "deadline".format(informer.describe(), payload))
                    elif down and not informer.outage:
                        self.progress("the API server answers again (the watch of {0} was down {1}s)".format(
                            informer.describe(), int(time.monotonic() - down[0])))
                    try:
                        item = events.get_nowait()
                    except queue.Empty:
                        item = None
                if changed and all(i.synced for i in informers):
                    done, new = judge()
                    if new != line:
                        line, said_at = new, time.monotonic()
                        self.progress(line)
                    if done:
                        return True, line
                    proceed.set()
                    again = recheck() if recheck else None
                    wake_at = None if again is None else time.monotonic() + max(0.0, again)
                now = time.monotonic()
                outage = self._outage(informers, now)
                if now >= deadline:
                    raise CoreException("Timed out after {0}s waiting for {1}; last seen: {2}{3}".format(
                        int(round(deadline - started)) if timeout is None else timeout, what, line, outage))
                if now - said_at >= heartbeat:
                    said_at = now
                    self.progress("still waiting for {0} ({1}s, {2}s left); last seen: {3}{4}".format(
                        what, int(now - started), int(deadline - now), line, outage))
        finally:
            stop.set()

    @staticmethod
    def _outage(informers, now):
        down = [i for i in informers if i.outage]
        if not down:
            return ""
        since = min(i.outage[0] for i in down)
        return "; the API server has not answered for {0}s ({1}), retrying until the deadline".format(
            int(now - since), down[0].outage[1])

    def watch_until(self, api_version, kind, condition, timeout, what,
                    namespace=None, label_selector=None, field_selector=None):
        """Watch a kind until ``condition(objects)`` is satisfied, or fail at the deadline.

        ``condition`` gets a dict ``{(namespace, name): object}`` of everything that matches and
        returns ``(done, seen)``; ``seen`` is the one-line description of the state, kept for the
        error message and said as progress. Lists once, then follows the API's watch from that
        resourceVersion (:meth:`follow`): heartbeats, outages retried, a refused list said plainly.
        """
        informer = self.informer(api_version, kind, namespace=namespace, label_selector=label_selector,
                                 field_selector=field_selector)
        self.follow([informer], lambda: condition(informer.objects), timeout, what)
        return informer.objects

    # -- running -----------------------------------------------------------------------------

    def execute_module(self):
        raise NotImplementedError

    def run(self):
        try:
            self.execute_module()
        except CoreException as exc:
            self.fail_from_exception(exc)


class _CallView:
    """The module as kubernetes.core's K8sService reads it (``params``), with the options of one ensure() call."""

    def __init__(self, module, params):
        self._module = module
        self.params = params

    def __getattr__(self, name):
        return getattr(self._module, name)


def _key(obj):
    meta = obj.get("metadata", {})
    return meta.get("namespace"), meta.get("name")


def _ref(name, namespace):
    return "{0}/{1}".format(namespace, name) if namespace else str(name)
