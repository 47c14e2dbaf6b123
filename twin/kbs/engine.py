"""The twin KBS's attestation engine: upstream Trustee's own libraries in one long-lived process.

Trustee evaluates attestation and resource policies with ``regorus``, builds and signs EAR tokens with
veraison's ``ear`` crate and parses KBS protocol messages with ``kbs-types``. Rewriting any of them in
Python would let the twin and the collection agree on a mistake again (issue 11: the twin evaluated a
whole Rego package where Trustee reads only ``trust_claims``), so the twin runs the crates themselves:
``twin/engine`` (Rust, built by ``twin.build.ensure_engine``) speaks JSON lines on stdin/stdout, one
request, one answer. :class:`Engine` is its client: one process per KBS, started on first use,
restarted if it died, calls serialised by a lock (the KBS serves requests from several threads).

Every answer carries ``notes``: what upstream would log (e.g. "No trust claims found by enforcing
policy ..., set all TrustVector claims to 0"); they go to the ``say`` callback.
"""

import json
import subprocess
import threading
from pathlib import Path

TIERS = ("none", "affirming", "warning", "contraindicated")


class EngineError(RuntimeError):
    """The engine refused the request; the message is upstream's error text."""


class EngineUnavailable(EngineError):
    """The engine process could not be started or died while answering."""


class Engine:
    def __init__(self, path: Path = None, say=None):
        self._path = Path(path) if path else None
        self.say = say or (lambda message: None)
        self._proc = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        if self._path is None:
            from ..build import ensure_engine

            self._path = ensure_engine(log=self.say)
        return self._path

    def _start(self):
        try:
            self._proc = subprocess.Popen([str(self.path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, text=True, bufsize=1)
        except OSError as exc:
            raise EngineUnavailable(f"attestation engine {self.path} cannot start: {exc}")

    def call(self, op: str, **fields):
        """Send one request; return its ``result`` or raise EngineError with the engine's message."""
        line = json.dumps(dict(fields, op=op)) + "\n"
        with self._lock:
            reply = None
            for attempt in (1, 2):  # a process found dead is restarted once
                if self._proc is None or self._proc.poll() is not None:
                    self._start()
                try:
                    self._proc.stdin.write(line)
                    self._proc.stdin.flush()
                    reply = self._proc.stdout.readline()
                except (BrokenPipeError, OSError):
                    reply = None
                if reply:
                    break
                code = self._proc.poll()
                self._proc = None
                if attempt == 2:
                    raise EngineUnavailable(f"attestation engine {self.path} died answering {op!r} (exit {code})")
        answer = json.loads(reply)
        for note in answer.get("notes") or []:
            self.say(f"attestation engine: {note}")
        if not answer.get("ok"):
            raise EngineError(answer.get("error") or "unknown engine error")
        return answer.get("result")

    def close(self):
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.stdin.close()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
            self._proc = None

    # -- operations ----------------------------------------------------------------------------

    def ping(self):
        return self.call("ping")

    def check_policy(self, policy: str):
        """Raise EngineError when regorus does not accept the policy (upstream ``check_policy_format``)."""
        self.call("check_policy", policy=policy)

    def appraise(self, policy: str, policy_input, reference_values=None, policy_id="default_cpu",
                 reference_errors=None, reference_failure=None):
        """One attestation policy over one policy input: ``{status, trust_vector, appraisal}``.

        ``reference_values`` None means no RVPS (``query_reference_value`` is then not defined).
        """
        return self.call("appraise", policy=policy, input=policy_input, policy_id=policy_id,
                         reference_values=reference_values, reference_errors=reference_errors,
                         reference_failure=reference_failure)

    def tiers(self, trust_vector: dict):
        """``{tiers: {claim: tier}, status, trust_vector}`` as the ear crate computes them."""
        return self.call("tiers", trust_vector=trust_vector)

    def transform_claims(self, tee: str, claims, init_data_claims=None, runtime_data_claims=None, verbose=True):
        """The policy input (and annotated evidence) the broker makes of a verifier's claims."""
        return self.call("transform_claims", tee=tee, claims=claims, init_data_claims=init_data_claims,
                         runtime_data_claims=runtime_data_claims, verbose=verbose)

    def issue(self, tee_claims, policies, reference_values=None, config=None, signer=None, policy_ids=("default",),
              reference_errors=None, reference_failure=None, now=None):
        """``{token, claims, jwk}``: the EAR for these devices, signed ES256.

        ``tee_claims``: ``[{tee, tee_class, claims, init_data_claims, runtime_data_claims}]``;
        ``policies``: ``{"default_cpu": text, "default_gpu": text}``; ``signer``:
        ``{key_pem, cert_pem}`` or None for the process's ephemeral key.
        """
        fields = dict(tee_claims=list(tee_claims), policies=policies, policy_ids=list(policy_ids),
                      reference_values=reference_values, reference_errors=reference_errors,
                      reference_failure=reference_failure, config=config, signer=signer)
        if now is not None:
            fields["now"] = int(now)
        return self.call("issue", **fields)

    def resource_allowed(self, policy: str, claims, resource_path, plugin="resource", query=None) -> bool:
        """The KBS resource policy's decision (``data.policy.allow``; false when undefined)."""
        parts = resource_path.split("/") if isinstance(resource_path, str) else list(resource_path)
        return self.call("resource", policy=policy, claims=claims, plugin=plugin, resource_path=parts,
                         query=query or {}) is True

    def parse(self, kind: str, body):
        """A KBS protocol message (``Request``, ``Attestation``...) parsed by kbs-types, as the KBS does."""
        if not isinstance(body, str):
            body = body.decode() if isinstance(body, (bytes, bytearray)) else json.dumps(body)
        return self.call("parse", kind=kind, body=body)


_shared = None
_shared_lock = threading.Lock()


def shared(say=None) -> Engine:
    """The process's engine (one per KBS process)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Engine(say=say)
        elif say is not None:
            _shared.say = say
        return _shared
