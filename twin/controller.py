"""How a twin controller is written: informers watch, a work queue dedupes, reconcile acts.

This is client-go's pattern in a few lines of Python, over the API's watch (the kubernetes client's
watch in its simplest form), chosen over kopf: kopf wants one asyncio operator per process, adds
its own finalizers and annotations to every object it handles (which would show up in the
collection's diffs and idempotence checks) and needs peering CRDs, while the twins need a handful
of cooperating controllers in one process sharing the simulated hardware, and objects that look
exactly as the real operators leave them.

A controller:

* names the kind it reconciles (``api_version``, ``plural``) and optionally other kinds it reads
  (``watches``: extra informers whose events enqueue keys via ``map_event``);
* implements ``reconcile(key)`` reading from ``self.cache(...)`` and writing through ``self.kube``;
  returning a number of seconds requeues the key after that delay (simulated durations), never a
  loop of blind polls: every other wake-up is a watch event.
"""

import hashlib
import heapq
import json
import logging
import os
import threading
import time
import traceback

from .kube import ApiError, path

log = logging.getLogger("twin")

# Cached objects are shared by every controller and handler reading the cache: client-go's listers
# hand out the stored objects on the understanding that callers treat them as read-only and
# deepcopy before changing them (kubernetes@v1.34 staging/src/k8s.io/client-go/tools/cache).
# With TWIN_CHECK_CACHE=1 every informer keeps a digest of what it stored and every reconcile is
# followed by a check, so a twin run names any controller that edits the cache in place.
CHECK_CACHE = os.environ.get("TWIN_CHECK_CACHE", "").strip() not in ("", "0")


def _digest(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).digest()


class Informer:
    """Lists then watches one kind; keeps a cache; calls handlers on every change."""

    def __init__(self, kube, api_version, plural, namespace=None, label_selector=None):
        self.kube = kube
        self.api_version = api_version
        self.plural = plural
        self.path = path(api_version, plural, namespace=namespace)
        self.label_selector = label_selector
        self.objects = {}
        self._digests = {}  # key -> digest of the object as stored (CHECK_CACHE only)
        self.handlers = []
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def add_handler(self, fn):
        self.handlers.append(fn)

    def get(self, name, namespace=None):
        with self._lock:
            return self.objects.get((namespace, name))

    def items(self):
        with self._lock:
            return list(self.objects.values())

    def _notify(self, kind, obj):
        for fn in self.handlers:
            try:
                fn(kind, obj)
            except Exception:  # a broken handler must not kill the watch
                log.error("handler failed for %s: %s", self.plural, traceback.format_exc())

    def run(self):
        while not self._stop.is_set():
            try:
                listing = self.kube.list(self.path, labelSelector=self.label_selector)
            except ApiError as exc:
                if exc.status == 404:
                    # The CRD is not installed (yet): the cache is truly empty, so it counts as synced
                    # (controllers reading it may start); list again until the kind appears.
                    self.synced.set()
                    self._stop.wait(1.0)
                    continue
                log.warning("list %s failed: %s", self.plural, exc)
                self._stop.wait(1.0)
                continue
            except Exception as exc:  # apiserver restarting
                log.warning("list %s failed: %s", self.plural, exc)
                self._stop.wait(1.0)
                continue
            fresh = {_key(o): o for o in listing.get("items", [])}
            with self._lock:
                gone = [o for k, o in self.objects.items() if k not in fresh]
                self.objects = fresh
                if CHECK_CACHE:
                    self._digests = {k: _digest(o) for k, o in fresh.items()}
            for obj in gone:
                self._notify("DELETED", obj)
            for obj in fresh.values():
                self._notify("SYNC", obj)
            self.synced.set()
            version = listing["metadata"].get("resourceVersion")
            try:
                for kind, obj in self.kube.watch(self.path, version, timeout_seconds=240,
                                                 labelSelector=self.label_selector):
                    if self._stop.is_set():
                        return
                    if kind == "ERROR":
                        break
                    if kind == "BOOKMARK":
                        continue
                    with self._lock:
                        if kind == "DELETED":
                            self.objects.pop(_key(obj), None)
                            self._digests.pop(_key(obj), None)
                        else:
                            self.objects[_key(obj)] = obj
                            if CHECK_CACHE:
                                self._digests[_key(obj)] = _digest(obj)
                    self._notify(kind, obj)
            except Exception as exc:
                if not self._stop.is_set():
                    log.info("watch %s ended (%s); re-listing", self.plural, exc)
                    self._stop.wait(0.2)

    def stop(self):
        self._stop.set()

    def changed_in_place(self):
        """Keys of cached objects that differ from what was stored (CHECK_CACHE only); each is
        reported once: its digest is taken again."""
        with self._lock:
            keys = [k for k, o in self.objects.items() if self._digests.get(k) != _digest(o)]
            for k in keys:
                self._digests[k] = _digest(self.objects[k])
        return keys


class WorkQueue:
    """Deduplicating queue with delayed re-adds (the requeue-after of controller-runtime).

    As client-go's delaying queue does, a key waits at most once: adding it again with a later
    time keeps the earlier one, an earlier time replaces it (``waitingForQueue`` in
    client-go ``util/workqueue/delaying_queue.go``), so a key requeued on every event does not pile up.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._ready = []
        self._queued = set()
        self._delayed = []
        self._due = {}  # key -> the time it is due; heap entries with another time are stale

    def add(self, key, after=0.0):
        with self._cond:
            if after > 0:
                due = time.monotonic() + after
                if key in self._queued or self._due.get(key, due + 1) <= due:
                    return
                self._due[key] = due
                heapq.heappush(self._delayed, (due, key))
            elif key not in self._queued:
                self._due.pop(key, None)  # queued now: a pending delayed add is redundant
                self._queued.add(key)
                self._ready.append(key)
            self._cond.notify()

    def get(self, stop):
        with self._cond:
            while not stop.is_set():
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    due, key = heapq.heappop(self._delayed)
                    if self._due.get(key) != due:
                        continue  # superseded by an earlier time, or queued meanwhile
                    del self._due[key]
                    if key not in self._queued:
                        self._queued.add(key)
                        self._ready.append(key)
                if self._ready:
                    key = self._ready.pop(0)
                    self._queued.discard(key)
                    return key
                wait = self._delayed[0][0] - now if self._delayed else 1.0
                self._cond.wait(min(wait, 1.0))
        return None


class Controller:
    """Base class: subclass, set ``api_version``/``plural``, implement ``reconcile``."""

    name = "controller"
    api_version = None
    plural = None
    namespace = None
    watches = ()  # ((api_version, plural), ...) read through self.cache and mapped by map_event

    def __init__(self, world):
        self.world = world
        self.kube = world.kube
        self.queue = WorkQueue()
        self.log = logging.getLogger(f"twin.{self.name}")

    # wiring ----------------------------------------------------------------------------------

    def setup(self, manager):
        self.manager = manager
        if self.plural:
            informer = manager.informer(self.api_version, self.plural)
            informer.add_handler(lambda kind, obj: self.queue.add(_key(obj)))
        for api_version, plural in self.watches:
            informer = manager.informer(api_version, plural)
            informer.add_handler(self._mapped)

    def _mapped(self, kind, obj):
        for key in self.map_event(kind, obj) or ():
            self.queue.add(key)

    def map_event(self, kind, obj):
        """Keys to reconcile when a watched (secondary) object changes; all primaries by default."""
        if not self.plural:
            return ()
        return [_key(o) for o in self.manager.informer(self.api_version, self.plural).items()]

    def cache(self, api_version, plural):
        return self.manager.informer(api_version, plural)

    def _own_informers(self):
        kinds = list(self.watches)
        if self.plural:
            kinds.insert(0, (self.api_version, self.plural))
        return [self.manager.informer(api_version, plural) for api_version, plural in kinds]

    def run(self, stop):
        # controller-runtime starts a controller's workers only once its caches have synced
        # (``WaitForCacheSync`` in ``pkg/internal/controller/controller.go``): a reconcile must not
        # read a half-filled cache and act on "nothing exists". A kind whose CRD is not installed
        # counts as synced (empty), see Informer.run.
        for informer in self._own_informers():
            while not informer.synced.wait(1.0):
                if stop.is_set():
                    return
        while not stop.is_set():
            key = self.queue.get(stop)
            if key is None:
                return
            try:
                after = self.reconcile(key)
            except ApiError as exc:
                # Conflicts are normal with several writers: try again soon with fresh state.
                level = logging.DEBUG if exc.status == 409 else logging.WARNING
                self.log.log(level, "reconcile %s: %s", key, exc)
                after = 0.5
            except Exception:
                self.log.error("reconcile %s failed: %s", key, traceback.format_exc())
                after = 2.0
            if CHECK_CACHE:
                self._check_cache(key)
            if after:
                self.queue.add(key, after)

    def reconcile(self, key):
        raise NotImplementedError

    def _check_cache(self, key):
        # Controllers run concurrently, so the one named is the one whose reconcile just ended:
        # the edit happened during it or during another's running at the same time.
        for informer in list(self.manager.informers.values()):
            for namespace, name in informer.changed_in_place():
                self.log.error("after reconcile %s of %s: the cached %s %s was changed in place "
                               "(objects from an informer's cache are shared: deepcopy before changing)",
                               key, self.name, informer.plural, f"{namespace}/{name}" if namespace else name)


class Manager:
    """Runs informers (one per kind, shared) and controllers in threads of one process."""

    def __init__(self, world):
        self.world = world
        self.informers = {}
        self.controllers = []
        self.stop = threading.Event()
        self.threads = []
        self.started = False
        self._lock = threading.RLock()

    def informer(self, api_version, plural):
        key = (api_version, plural)
        with self._lock:
            if key not in self.informers:
                self.informers[key] = Informer(self.world.kube, api_version, plural)
                if self.started:  # asked for from a reconcile: it must run, or its cache stays empty
                    self._thread(self.informers[key].run, f"informer-{plural}")
            return self.informers[key]

    def add(self, controller):
        controller.setup(self)
        self.controllers.append(controller)

    def start(self):
        with self._lock:
            self.started = True
            for informer in self.informers.values():
                self._thread(informer.run, f"informer-{informer.plural}")
        for controller in self.controllers:
            self._thread(lambda c=controller: c.run(self.stop), f"controller-{controller.name}")

    def _thread(self, fn, name):
        thread = threading.Thread(target=fn, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def shutdown(self):
        self.stop.set()
        for informer in self.informers.values():
            informer.stop()


def _key(obj):
    meta = obj.get("metadata", {})
    return meta.get("namespace"), meta.get("name")
