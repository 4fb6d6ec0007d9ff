#!/usr/bin/env bash
# The test-host stage of `make test`: boot four test hosts, check what they promise each
# other, then at the same time:
#   testhost1: the nfs_share target over a real NFS mount (testhost2 reads the chain
#              through testhost1's forward), the zfs_backend target, the molecule smoke
#              scenario on the host that is already up, then backups and restores;
#   testhost2: the lvm_backend target, eight simultaneous runs of one change on LVM and
#              on ZFS (tests/testhost/race.yml), then the molecule scenario of the backup
#              role on the host that is already up;
#   testhost3 and testhost4: replication from testhost3 to testhost4 (the parts of
#              tests/testhost/replica.yml: the set-up, then the ZFS part beside the nfs and
#              LVM parts), then the molecule scenario of the replication role on the same
#              two hosts.
# A replication step keeps one host waiting for the other much of the time, so the pair
# runs beside the single-host steps instead of after them, and two of its parts at once.
# Each step adds its wall time to the stage table of `make test` (STRATUM_STAGE_TIMES).
# The hosts are stopped by pid on every exit, also when a step fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${BIN:?BIN must name the virtualenv bin directory}" "${COLLECTIONS:?COLLECTIONS must name the installed collection path}"

harness=(python3 tests/testhost/testhost.py)
trap '"${harness[@]}" down' EXIT

export PATH="$BIN:$PATH" ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS" ANSIBLE_ROLES_PATH="$PWD/tests/integration/targets"
export ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1
inventory=.testhost/inventory.yml

# timed NAME COMMAND...: runs COMMAND and adds a row to the stage table.
timed() {
  local name=$1 t rc=0
  shift
  t=$(date +%s)
  "$@" || rc=$?
  echo "testhost: $name: $(( $(date +%s) - t )) s, exit $rc"
  if [ -n "${STRATUM_STAGE_TIMES:-}" ]; then
    printf '  %s\t%d\t%s\n' "$name" $(( $(date +%s) - t )) "$([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)")" \
      >> "$STRATUM_STAGE_TIMES"
  fi
  return "$rc"
}


host1() {
  timed "testhost1: nfs_share" ansible-playbook -i "$inventory" tests/testhost/nfs.yml
  timed "testhost1: zfs_backend" ansible-playbook -i "$inventory" tests/testhost/block.yml \
    -e testhost_block_host=testhost1 -e '{"testhost_block_targets": ["zfs_backend"]}'
  STRATUM_TESTHOST_REUSE=testhost1 timed "testhost1: molecule smoke" molecule test -s smoke
  timed "testhost1: backups and restores (LVM thick and thin, ZFS, NFS)" ansible-playbook -i "$inventory" \
    tests/testhost/backup.yml -e backup_host=testhost1
}

host2() {
  timed "testhost2: lvm_backend" ansible-playbook -i "$inventory" tests/testhost/block.yml \
    -e testhost_block_host=testhost2 -e '{"testhost_block_targets": ["lvm_backend"]}'
  ANSIBLE_FORKS=10 timed "testhost2: eight simultaneous runs (LVM, ZFS)" \
    ansible-playbook -i "$inventory" tests/testhost/race.yml -e race_host=testhost2
  STRATUM_TESTHOST_REUSE=testhost2 timed "testhost2: molecule backup (the backup role)" molecule test -s backup
}

pair() {
  local replica=(ansible-playbook -i "$inventory" -e replica_source=testhost3 -e replica_target=testhost4) zfs nfs_lvm rc=0
  timed "testhost3 -> testhost4: replication set-up (pools, key pair, receiver)" "${replica[@]}" tests/testhost/replica/setup.yml
  # after the set-up the parts share only the key and the receiver: ZFS beside nfs then LVM
  timed "testhost3 -> testhost4: replication, ZFS" "${replica[@]}" tests/testhost/replica/zfs.yml \
    2>&1 | sed -u 's/^/[zfs] /' & zfs=$!
  { timed "testhost3 -> testhost4: replication, nfs" "${replica[@]}" tests/testhost/replica/nfs.yml &&
    timed "testhost3 -> testhost4: replication, LVM" "${replica[@]}" tests/testhost/replica/lvm.yml; } \
    2>&1 | sed -u 's/^/[nfs, lvm] /' & nfs_lvm=$!
  wait "$zfs" || rc=1
  wait "$nfs_lvm" || rc=1
  [ "$rc" -eq 0 ] || return 1
  STRATUM_TESTHOST_REUSE=testhost3,testhost4 timed "testhost3 -> testhost4: molecule replication (the replication role)" \
    molecule test -s replication
}

# Each stream's lines carry its hosts' names; all three run to the end, and the stage fails
# if any failed.
"${harness[@]}" up --hosts 4
timed "peers check (ping, SSH and NFS between the hosts)" ansible-playbook -i "$inventory" tests/testhost/peers.yml
step=$(date +%s)
host1 2>&1 | sed -u 's/^/[testhost1] /' & host1_pid=$!
host2 2>&1 | sed -u 's/^/[testhost2] /' & host2_pid=$!
pair 2>&1 | sed -u 's/^/[testhost3,4] /' & pair_pid=$!
failed=0
wait "$host1_pid" || failed=1
wait "$host2_pid" || failed=1
wait "$pair_pid" || failed=1
echo "testhost: all hosts: $(( $(date +%s) - step )) s"
if [ "$failed" -ne 0 ]; then
  echo "testhost: a test on the test hosts failed (see the [testhost1], [testhost2] and [testhost3,4] lines above)" >&2
  exit 1
fi
timed "stop the hosts" "${harness[@]}" down
