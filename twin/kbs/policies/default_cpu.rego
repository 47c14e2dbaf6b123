# CPU attestation policy of the Trustee twin: the rules of Trustee's default EAR CPU policy
# (TDX and SEV-SNP, the TEEs the twin's verifiers emit), written for the twin. Each AR4SI group
# starts at the value that means "not shown trustworthy" and is raised only when the evidence
# matches the reference values.
#
# Trustee's attestation service reads exactly two rules of this package (attestation-service
# ear_token/broker.rs): `trust_claims`, the AR4SI vector (without it every claim is 0, status
# "none"), and `extensions`, extra claims of the submod. Nothing else here reaches the token.
package policy

import rego.v1

default executables := 33 # unrecognized run-time

default hardware := 97 # unrecognized hardware

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

# -- Intel TDX --------------------------------------------------------------------------------------

# Kernel, initrd and command line (RTMR 1 and 2), and the firmware's own view of the kernel and
# its parameters in the event log.
executables := 3 if {
	input.tdx
	input.tdx.quote.body.rtmr_1 in query_reference_value("rtmr_1")
	input.tdx.quote.body.rtmr_2 in query_reference_value("rtmr_2")
	tdx_kernel_event_matches
	tdx_kernel_params_event_matches
}

# Without the event-log matches (e.g. a boot through a second-stage loader), the RTMRs alone.
else := 4 if {
	input.tdx
	input.tdx.quote.body.rtmr_1 in query_reference_value("rtmr_1")
	input.tdx.quote.body.rtmr_2 in query_reference_value("rtmr_2")
}

# A genuine TD signed by Intel's quoting enclave, on a platform whose TCB is current, running the
# expected TD firmware (MRTD).
hardware := 2 if {
	input.tdx
	input.tdx.quote.header.tee_type == "81000000"
	input.tdx.quote.header.vendor_id == "939a7233f79c4ca9940a0db3957f0607"
	input.tdx.quote.body.mr_td in query_reference_value("mr_td")
	input.tdx.tcb_status == "UpToDate"
	input.tdx.collateral_expiration_status == "0"
}

configuration := 2 if {
	input.tdx
	input.tdx.td_attributes.debug == false
	input.tdx.quote.body.xfam in query_reference_value("xfam")
}

tdx_kernel_event_matches if {
	some event in input.tdx.uefi_event_logs
	event.type_name == "EV_EFI_BOOT_SERVICES_APPLICATION"
	"File(kernel)" in event.details.device_paths
	some d in event.digests
	d.digest == query_reference_value("tdvfkernel")
}

tdx_kernel_params_event_matches if {
	some event in input.tdx.uefi_event_logs
	event.type_name == "EV_EVENT_TAG"
	event.details.string == "LOADED_IMAGE::LoadOptions"
	some d in event.digests
	d.digest == query_reference_value("tdvfkernelparams")
}

# -- AMD SEV-SNP ------------------------------------------------------------------------------------

# The launch measurement covers firmware, kernel, initrd and command line.
executables := 3 if {
	input.snp
	input.snp.measurement in query_reference_value("snp_launch_measurement")
}

hardware := 2 if {
	input.snp
	input.snp.reported_tcb_bootloader in query_reference_value("snp_bootloader")
	input.snp.reported_tcb_microcode in query_reference_value("snp_microcode")
	input.snp.reported_tcb_snp in query_reference_value("snp_snp_svn")
	input.snp.reported_tcb_tee in query_reference_value("snp_tee_svn")
}

configuration := 2 if {
	input.snp
	input.snp.policy_debug_allowed == false
	input.snp.policy_migrate_ma == false
	input.snp.platform_smt_enabled == query_reference_value("snp_smt_enabled")
	input.snp.platform_tsme_enabled == query_reference_value("snp_tsme_enabled")
	input.snp.policy_abi_major == query_reference_value("snp_guest_abi_major")
	input.snp.policy_abi_minor == query_reference_value("snp_guest_abi_minor")
	input.snp.policy_single_socket == query_reference_value("snp_single_socket")
	input.snp.policy_smt_allowed == query_reference_value("snp_smt_allowed")
}

# Platform details not pinned: still safe when debugging and migration agents are off.
else := 3 if {
	input.snp
	input.snp.policy_debug_allowed == false
	input.snp.policy_migrate_ma == false
}

# -- submod extensions ------------------------------------------------------------------------------

# The workload the guest runtime was told to run, as the initdata's agent policy names it
# (the attestation service turns its policy_data into init_data_claims.agent_policy_claims):
# images and user ids of its containers, each listed only when there is at least one.
extensions := [{
	"name": "ear.trustee.identifiers",
	"key": -18,
	"value": {"validated": object.union(listed("container_images", agent_images), listed("container_uids", agent_uids))},
}]

agent_containers := [c | some c in input.init_data_claims.agent_policy_claims.containers]

agent_images := [c.OCI.Annotations["io.kubernetes.cri.image-name"] | some c in agent_containers]

agent_uids := [c.OCI.Process.User.UID | some c in agent_containers]

listed(name, values) := {name: values} if {
	count(values) > 0
} else := {}
