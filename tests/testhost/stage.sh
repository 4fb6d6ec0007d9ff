#!/usr/bin/env bash
# The test-host stage of `make test`: boot two test hosts, check what they promise each
# other, run the integration targets there over a real NFS mount, then the molecule
# scenarios. The hosts are stopped by pid on every exit, also when a step fails.
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

step=$(date +%s)
ansible-playbook -i .testhost/inventory.yml tests/testhost/integration.yml
echo "testhost: integration targets over NFS: $(( $(date +%s) - step )) s"
"${harness[@]}" down

step=$(date +%s)
for scenario in extensions/molecule/*/molecule.yml; do
  molecule test -s "$(basename "$(dirname "$scenario")")"
done
echo "testhost: molecule: $(( $(date +%s) - step )) s"
echo "testhost: whole test-host stage: $(( $(date +%s) - stage_start )) s"
