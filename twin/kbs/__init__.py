"""The twin's Trustee KBS: a real process speaking the KBS protocol, with its attestation service.

``server`` (the HTTP(S) protocol, sessions, resources), ``attestation`` (verifiers → policies →
EAR), ``verifier`` (simulated TDX/SNP/NVIDIA evidence from ``twin.tee``), ``engine`` (upstream's
crates regorus, ear and kbs-types in the Rust process of ``twin/engine``), ``rvps`` (the reference
value store), ``config`` (the operator's kbs-config.toml and the pod's paths), ``client`` (the
guest side, for tests and in-pod attestation), ``policies/`` (the twin's own Rego, used when the
upstream templates are absent).
"""
