# GPU attestation policy of the Trustee twin: the rules of Trustee's default EAR GPU policy, read
# against the claims NRAS returns for one GPU (claims version 3.0). Applied to every gpuN submod.
# The attestation service reads only `trust_claims` (and `extensions`, none here).
package policy

import rego.v1

default hardware := 97 # unrecognized hardware

default executables := 33 # unrecognized run-time

default configuration := 36 # configuration elements unavailable

default file_system := 0

default instance_identity := 0

default runtime_opaque := 0

default storage_opaque := 0

default sourced_data := 0

trust_claims := {
	"instance-identity": instance_identity,
	"configuration": configuration,
	"executables": executables,
	"file-system": file_system,
	"hardware": hardware,
	"runtime-opaque": runtime_opaque,
	"storage-opaque": storage_opaque,
	"sourced-data": sourced_data,
}

# The attestation report is signed by a genuine device whose certificate chain is valid and not
# revoked, and the architecture is the one claimed.
hardware := 2 if {
	report_chain := input.nvidia["x-nvidia-gpu-attestation-report-cert-chain"]
	report_chain["x-nvidia-cert-ocsp-status"] == "good"
	report_chain["x-nvidia-cert-status"] == "valid"
	input.nvidia["x-nvidia-gpu-attestation-report-cert-chain-fwid-match"]
	input.nvidia["x-nvidia-gpu-attestation-report-parsed"]
	input.nvidia["x-nvidia-gpu-attestation-report-signature-verified"]
	input.nvidia["x-nvidia-gpu-arch-check"]
}

# Secure boot on, debug off, and VBIOS and driver among the versions allowed.
configuration := 2 if {
	gpu_locked_down
	input.nvidia["x-nvidia-gpu-vbios-version"] in query_reference_value("allowed_vbios_versions")
	input.nvidia["x-nvidia-gpu-driver-version"] in query_reference_value("allowed_driver_versions")
}

# No version lists configured: locked down is still a safe configuration.
else := 3 if {
	gpu_locked_down
}

# The measurements match the reference integrity manifests NVIDIA signs for this VBIOS and driver.
executables := 3 if {
	vbios_chain := input.nvidia["x-nvidia-gpu-vbios-rim-cert-chain"]
	vbios_chain["x-nvidia-cert-ocsp-status"] == "good"
	vbios_chain["x-nvidia-cert-status"] == "valid"
	every check in rim_checks {
		input.nvidia[check]
	}
	input.nvidia.measres == "success"
}

gpu_locked_down if {
	input.nvidia.secboot
	input.nvidia.dbgstat == "disabled"
}

rim_checks := [sprintf("x-nvidia-gpu-%s-rim-%s", [part, check]) |
	some part in ["driver", "vbios"]
	some check in ["fetched", "measurements-available", "schema-validated", "signature-verified", "version-match"]
]
