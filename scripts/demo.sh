#!/usr/bin/env bash
# The main job, end to end on a fresh clone: set up the toolchain, start a twin of an OpenShift
# cluster (hardware profile TWIN_PROFILE, default: 3 Intel TDX workers with H100), run the
# bring-up playbook against it, print the report, and take the twin down (KEEP_TWIN=1 keeps it).
# The bring-up runs the collection as users take it: built into a tarball, installed offline into an
# empty collections path, confidential.gpu.site called by its FQCN from a directory outside the checkout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/setup.sh
export PATH="$root/.venv/bin:$PATH"
export ANSIBLE_HOME="$root/build/ansible-home"
# kubernetes.core and community.crypto come from the ansible package, as after `pip install ansible`.
rm -rf build/dist build/installed-collections
ansible-galaxy collection build --output-path build/dist . >/dev/null
ansible-galaxy collection install --offline -p build/installed-collections build/dist/confidential-gpu-*.tar.gz >/dev/null
echo "confidential.gpu: $(ls build/dist) installed into build/installed-collections"
export ANSIBLE_COLLECTIONS_PATH="$root/build/installed-collections"
# No ansible.cfg, playbook or role of the checkout is near the run: only the installed collection.
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/cgpu-demo.XXXXXX")
profile=${TWIN_PROFILE:-default}
state="$root/build/demo-twin"
python -m twin --state-dir "$state" up --profile "$profile"
if [ "${KEEP_TWIN:-0}" != 1 ]; then
  trap 'python -m twin --state-dir "$state" down' EXIT
fi
export K8S_AUTH_KUBECONFIG="$state/admin.kubeconfig"
# The twin's route hosts resolve through its own zone, not DNS: hand the KBS check the address.
kbs=$(python -m twin --state-dir "$state" resolve kbs-trustee-operator-system)
# What a user does with veritas on a real cluster: reference values of the guest image for this
# release and TEE, with the kernel parameter the proof's pod adds (the command line is measured).
tee=$(python -m twin.tee tee --profile "$profile")
values="$root/build/demo-reference-values.json"
python -m twin.tee reference-values --profile "$profile" \
  --kernel-cmdline-extra "agent.guest_components_rest_api=all" > "$values"
(cd "$run_dir" && ansible-playbook -i localhost, confidential.gpu.site -e "@$root/scripts/demo-vars.yml" \
  -e "{\"trustee_kbs_resolve\": [\"$kbs\"], \"site_report_dir\": \"$root/build/report\",
       \"trustee_tee\": \"$tee\", \"trustee_reference_values_sources\": [\"$values\"]}" "$@")
rm -rf "$run_dir"
echo
echo "report: $root/build/report/report.md (kubeconfig of the twin: $K8S_AUTH_KUBECONFIG)"
