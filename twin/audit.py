"""Count API requests from the twin's audit log (one JSON line per request, stage ResponseComplete)."""

import collections
import contextlib
import json
from pathlib import Path


class AuditLog:
    def __init__(self, path):
        self.path = Path(path)

    def offset(self):
        return self.path.stat().st_size if self.path.exists() else 0

    def events(self, start=0, end=None):
        if not self.path.exists():
            return []
        with open(self.path, "rb") as handle:
            handle.seek(start)
            data = handle.read(None if end is None else end - start)
        events = []
        for line in data.splitlines():
            if line.strip():
                event = json.loads(line)
                if event.get("stage") == "ResponseComplete" or event.get("stage") == "Panic":
                    events.append(event)
        return events

    @contextlib.contextmanager
    def window(self, user=None):
        """``with audit.window(user='admin') as w: ...`` then ``w.counts``, ``w.writes``, ``w.events``."""
        window = Window(self, user)
        window.start = self.offset()
        try:
            yield window
        finally:
            window.close()


class Window:
    WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}

    def __init__(self, log, user):
        self.log = log
        self.user = user
        self.start = 0
        self.events = []

    def close(self):
        events = self.log.events(self.start)
        if self.user:
            events = [e for e in events if e.get("user", {}).get("username") == self.user]
        self.events = events

    @property
    def counts(self):
        """Counter of (verb, resource[/subresource]) -> requests."""
        return collections.Counter((e["verb"], _resource(e)) for e in self.events)

    @property
    def total(self):
        return len(self.events)

    # Reviews are create requests the API server answers and stores nowhere (kubectl auth can-i, the
    # collection's access_review): they change no state, so they are not writes.
    REVIEWS = {"selfsubjectaccessreviews", "selfsubjectrulesreviews", "subjectaccessreviews",
               "localsubjectaccessreviews", "tokenreviews", "selfsubjectreviews"}

    @property
    def writes(self):
        return [e for e in self.events if e["verb"] in self.WRITE_VERBS
                and (e.get("objectRef") or {}).get("resource") not in self.REVIEWS]

    @property
    def reviews(self):
        """The review requests (not writes; see REVIEWS)."""
        return [e for e in self.events if (e.get("objectRef") or {}).get("resource") in self.REVIEWS]

    @property
    def forbidden(self):
        return [e for e in self.events if e.get("responseStatus", {}).get("code") == 403]


def _resource(event):
    ref = event.get("objectRef") or {}
    resource = ref.get("resource", event.get("requestURI", ""))
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    return resource
