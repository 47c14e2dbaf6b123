"""The twin's Trustee KBS: a real process speaking the KBS protocol, with its attestation service.

``server`` (the HTTP(S) protocol, sessions, resources), ``attestation`` (verifiers → policies →
EAR), ``verifier`` (simulated TDX/SNP/NVIDIA evidence from ``twin.tee``), ``rego`` (policies in OPA),
``rvps`` (reference value files), ``config`` (the operator's kbs-config.toml and the pod's paths),
``client`` (the guest side, for tests and in-pod attestation), ``policies/`` (the Rego the operator
twin generates).
"""
