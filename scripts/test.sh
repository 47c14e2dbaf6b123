#!/usr/bin/env bash
# The whole test suite, as CI runs it: unit, twin and integration tests (pytest, over HTTP to a real
# kube-apiserver), the conformance run against the real upstream CRDs, molecule, benchmarks,
# ansible-lint, ansible-test sanity and the changelog lint. Prints how long each step took.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/setup.sh || exit 1
export PATH="$root/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$root/build/collections"
export ANSIBLE_HOME="$root/build/ansible-home"
export PYTHONUNBUFFERED=1
shared=${CGPU_SHARED_DIR:-$root/../shared}
mkdir -p tests/output
passed=0 failed=0 failures=()

step() {
  local name=$1; shift
  local started=$SECONDS
  echo "=== $name"
  if "$@"; then
    passed=$((passed + 1)); echo "=== $name: ok in $((SECONDS - started))s"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "=== $name: FAILED in $((SECONDS - started))s"
  fi
}

# CGPU_FULL=1 runs everything: the conformance run over every twin test, every molecule scenario
# and the benchmarks. The default (CI) run keeps within CI's time on a 2-core machine: conformance
# for the tests whose roles and modules write operator objects, the default molecule scenario.
full=${CGPU_FULL:-0}

conformance() {
  if [ ! -d "$shared/crds" ]; then
    case "${CI:-}" in ""|0|false|no) ;; *)
      echo "conformance: $shared/crds is absent and CI is set (CI always has the team's shared folder; set CGPU_SHARED_DIR)" >&2
      return 1 ;;
    esac
    echo "conformance skipped: $shared/crds is absent (the team's shared folder; set CGPU_SHARED_DIR)"
    return 0
  fi
  local tests=(tests/integration tests/twin)
  if [ "$full" != 1 ]; then
    tests=(tests/integration tests/twin/test_olm_twin.py tests/twin/test_nfd_role.py
           tests/twin/sandboxed/test_roles.py tests/twin/sandboxed/test_osc_twin.py tests/twin/test_trustee_twin.py)
  fi
  CGPU_SHARED_DIR="$shared" python -m pytest -q --twin-crds=upstream "${tests[@]}" \
    --junitxml=tests/output/conformance.xml
}

molecule_scenarios() {
  if [ "$full" = 1 ]; then
    molecule test --all
  else
    molecule test -s default
  fi
}

benchmarks() {
  if [ "$full" != 1 ]; then
    echo "benchmarks skipped (CGPU_FULL=1 runs them): $(for b in tests/bench/[a-z]*.py; do m=${b%.py}; printf "python -m %s " "${m//\//.}"; done)"
    return 0
  fi
  for b in tests/bench/[a-z]*.py; do
    m=${b%.py}
    python -m "${m//\//.}" || return 1
  done
}

sanity() {
  # ansible-test runs only inside ansible_collections/<ns>/<name>, outside any git checkout that
  # ignores it, with its dependencies in the same tree: copy (a symlink is not enough).
  local base=${TMPDIR:-/tmp}/cgpu-sanity-$$
  local dest=$base/ansible_collections/confidential/gpu
  mkdir -p "$dest" "$base/ansible_collections/kubernetes"
  git ls-files -co --exclude-standard | grep -v '^twin/' | tar -cf - -T - | tar -xf - -C "$dest"
  cp -r "$(python -c 'import ansible_collections.kubernetes.core as k, os; print(os.path.dirname(k.__path__[0]))')/core" \
    "$base/ansible_collections/kubernetes/"
  # ansible-test bootstraps pip for its venvs from a file it would download; this machine reaches
  # only package registries, so give it a bootstrap that uses ensurepip and the configured index.
  mkdir -p ~/.ansible/test/cache
  cp scripts/get_pip_shim.py ~/.ansible/test/cache/get_pip_24_2.py
  (cd "$dest" && ansible-test sanity --python 3.11 --color no --skip-test shellcheck "$@")
  local rc=$?
  rm -rf "$base"
  return $rc
}

step "python build of the twin's control plane (cached after the first run)" python -m twin build
step "pytest: unit, twin and integration tests (twin CRDs)" \
  python -m pytest -q tests/unit tests/twin tests/integration --durations=15 --junitxml=tests/output/pytest.xml
step "pytest: conformance (real upstream CRDs from ../shared/crds)" conformance
step "molecule" molecule_scenarios
step "benchmarks (tests/bench)" benchmarks
step "ansible-lint (profile production)" ansible-lint --offline
step "ansible-test sanity" sanity
step "antsibull-changelog lint" antsibull-changelog lint

echo
if [ "$failed" -gt 0 ]; then
  printf 'failed step: %s\n' "${failures[@]}"
fi
echo "steps: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
