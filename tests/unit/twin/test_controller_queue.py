"""The twin's work queue and manager keep controller-runtime's discipline: one pending entry per key,
the earliest requeue time wins, workers start only on synced caches, late informers run."""

import threading
import time

from twin.controller import Controller, Informer, Manager, WorkQueue


def drain(queue, stop, until):
    keys = []
    while time.monotonic() < until:
        stop_at = threading.Timer(max(0.0, until - time.monotonic()), stop.set)
        stop_at.start()
        key = queue.get(stop)
        stop_at.cancel()
        if key is None:
            break
        keys.append(key)
    return keys


def test_a_key_requeued_many_times_waits_once():
    queue = WorkQueue()
    for attempt in range(100):
        queue.add("a", after=0.05)
    assert len(queue._delayed) == 1
    keys = drain(queue, threading.Event(), time.monotonic() + 0.3)
    assert keys == ["a"]


def test_the_earlier_requeue_time_wins():
    queue = WorkQueue()
    queue.add("a", after=5.0)
    queue.add("a", after=0.05)
    started = time.monotonic()
    keys = drain(queue, threading.Event(), started + 0.5)
    assert keys == ["a"]
    assert not queue._due


def test_an_immediate_add_supersedes_a_pending_delay():
    queue = WorkQueue()
    queue.add("a", after=0.05)
    queue.add("a")
    keys = drain(queue, threading.Event(), time.monotonic() + 0.3)
    assert keys == ["a"]


class _Kube:
    """Just enough of twin.kube for an informer whose list blocks until released."""

    def __init__(self):
        self.release = threading.Event()

    def list(self, p, **params):
        self.release.wait(5)
        return {"items": [{"metadata": {"name": "x", "namespace": None}}], "metadata": {"resourceVersion": "1"}}

    def watch(self, p, version, **params):
        threading.Event().wait(0.2)
        return iter(())


class _World:
    def __init__(self):
        self.kube = _Kube()


class _Recorder(Controller):
    name = "recorder"
    api_version = "v1"
    plural = "things"

    def __init__(self, world):
        super().__init__(world)
        self.seen = []
        self.done = threading.Event()

    def reconcile(self, key):
        self.seen.append(len(self.cache("v1", "things").items()))
        self.done.set()


def test_workers_start_only_once_their_caches_synced():
    world = _World()
    manager = Manager(world)
    controller = _Recorder(world)
    manager.add(controller)
    controller.queue.add((None, "early"))  # a key queued before the cache has anything
    manager.start()
    assert not controller.done.wait(0.3)
    world.kube.release.set()
    assert controller.done.wait(5)
    assert controller.seen[0] == 1  # it read a synced cache, not an empty one
    manager.shutdown()


def test_an_informer_asked_for_after_start_runs():
    world = _World()
    world.kube.release.set()
    manager = Manager(world)
    manager.start()
    late = manager.informer("v1", "latecomers")
    assert isinstance(late, Informer)
    assert late.synced.wait(5)
    manager.shutdown()
