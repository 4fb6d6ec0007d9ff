#!/usr/bin/env bash
# The test-host stage of `make test`: boot two test hosts, check what they promise each
# other, run the integration targets there - over a real NFS mount on testhost1 and on
# LVM and ZFS on testhost2, at the same time - then the molecule scenarios. The hosts
# are stopped by pid on every exit, also when a step fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${BIN:?BIN must name the virtualenv bin directory}" "${COLLECTIONS:?COLLECTIONS must name the installed collection path}"

harness=(python3 tests/testhost/testhost.py)
stage_start=$(date +%s)
trap '"${harness[@]}" down' EXIT

export PATH="$BIN:$PATH" ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS" ANSIBLE_ROLES_PATH="$PWD/tests/integration/targets"
export ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1

"${harness[@]}" up --hosts 2
ansible -i .testhost/inventory.yml all -m ping
ansible-playbook -i .testhost/inventory.yml tests/testhost/peers.yml

# Each run's lines carry its name; both run to the end, and the stage fails if either failed.
run_targets() {
  local label=$1 playbook=$2 start rc=0
  start=$(date +%s)
  ansible-playbook -i .testhost/inventory.yml "$playbook" 2>&1 | sed -u "s/^/[$label] /" || rc=$?
  echo "testhost: integration targets, $label: $(( $(date +%s) - start )) s, exit $rc"
  return "$rc"
}
step=$(date +%s)
run_targets nfs tests/testhost/integration.yml & nfs_pid=$!
run_targets lvm-zfs tests/testhost/block.yml & block_pid=$!
failed=0
wait "$nfs_pid" || failed=1
wait "$block_pid" || failed=1
echo "testhost: integration targets on both hosts: $(( $(date +%s) - step )) s"
if [ "$failed" -ne 0 ]; then
  echo "testhost: integration targets failed (see the [nfs] and [lvm-zfs] lines above)" >&2
  exit 1
fi
"${harness[@]}" down

step=$(date +%s)
for scenario in extensions/molecule/*/molecule.yml; do
  molecule test -s "$(basename "$(dirname "$scenario")")"
done
echo "testhost: molecule: $(( $(date +%s) - step )) s"
echo "testhost: whole test-host stage: $(( $(date +%s) - stage_start )) s"
