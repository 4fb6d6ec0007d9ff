# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Replication benchmark on two test hosts (make bench-replica).

Boots two test hosts (tests/testhost/testhost.py up --hosts 2), replicates from
testhost1 to testhost2 and prints ratios from one run:

- ZFS incremental: the bytes that stratum.storage.replica sends against the
  `zfs send -i` stream, and its wall time against a hand pipeline
  `zfs send -i A B | ssh ... zfs recv -s -u` (the same SSH options as the
  module, from _replica.Peer); syncoid (Debian's sanoid package) on the same
  snapshots beside them;
- LVM thin and qcow2 (the nfs backend on a local directory): the bytes sent,
  for a full replica and for incrementals, against the data written.

The target's pool, volume group and directory, the replication key and the
receiver are set up as tests/testhost/replica.yml does (the role's keys.yml
and receiver.yml). The hand pipeline and syncoid log in to the target with the
test harness's root key: the replication key runs only the receiver.

Each ZFS round writes 16 MiB of random data at 1 MiB-aligned places of a
64 MiB zvol (volblocksize 16K), takes a snapshot, then runs the four
contenders one after the other, in an order that rotates between rounds, each
into its own target dataset. Every contender runs as one Ansible task
(timed by bench/callback_plugins/bench_timing.py): ours as the module, the
hand pipeline and syncoid with ansible.builtin.raw, and the hand pipeline once
more as an ansible.builtin.shell task (what a playbook that runs it pays: the
start-up of a module on the host, as ours does); the table also gives the
time measured inside the guest (the module's Python process, the pipeline,
syncoid). Bytes on the wire are the source's network interface counter
(tx_bytes) around each contender. A last round runs with timing wrappers
around zfs, ssh and the receiver to show where the module's time goes.

It prints figures and asserts no time; it fails when a task fails or a replica
differs from its source. It stops the hosts it booted on every exit.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path

import run
from run import INVENTORY, KEY, TESTHOST, Ansible, BenchError, Host, fmt, fmt_spread, log, spread, write_results

SRC, DST = 'testhost1', 'testhost2'
MIB = 1 << 20
VOLUME_MIB = 64  # each volume
FULL_MIB = 32  # data in a thin or qcow2 volume before its first replica (the zvol is filled)
CHANGE_MIB = 16  # data changed before each incremental, in 1 MiB pieces
CONTENDERS = ('ours', 'hand', 'shell', 'syncoid')
LARGE_MIB = 160  # the zvol of the large rounds, rewritten whole each round (--large-mib)
LARGE_ZVOL = 'z2'
LARGE_CONTENDERS = ('ours', 'hand')
TARGETS = {'zfs bytes': 1.02, 'zfs wall': 1.1, 'block bytes': 1.1}
TASK_TIMEOUT = 900  # seconds: a task that hangs (a guest's stuck I/O) fails the run instead

ZPOOL_SRC, ZPOOL_DST = 'bsrc', 'btgt'
ZPARENT = ZPOOL_SRC + '/v'
ZVOL = 'z1'
ZDATASET = '%s/%s' % (ZPARENT, ZVOL)
ZTARGET = {'ours': ZPOOL_DST + '/replicas', 'hand': ZPOOL_DST + '/hand', 'shell': ZPOOL_DST + '/shell',
           'syncoid': ZPOOL_DST + '/syncoid'}
VG_SRC, VG_DST, THIN_POOL = 'bsvg', 'btvg', 'pool'
NFS_SRC, NFS_DST = '/srv/bnfs-src', '/srv/bnfs'
BLOCK_VOLUMES = {'lvm thin': 't1', 'qcow2': 'n1'}

KEY_DIR = '/etc/stratum-storage/replication'
REPLICATION_KEY = KEY_DIR + '/id_ed25519'
KNOWN_HOSTS = KEY_DIR + '/known_hosts'
ROOT_KEY = '/root/.ssh/stratum-bench'  # the harness's key: a shell login on the target
RUN_DIR = '/run/stratum-bench'
PYTHON_WRAPPER = '/usr/local/sbin/stratum-bench-python3'
PYTHON_LOG = RUN_DIR + '/python.log'
COMMAND_LOG = RUN_DIR + '/commands.log'
RECEIVER = '/usr/local/sbin/stratum-receiver'
PROFILED = {SRC: ('zfs', 'ssh', 'udevadm'), DST: ('zfs', 'udevadm')}


# -- what runs on the guests -------------------------------------------------------------

def python_wrapper() -> str:
    """The interpreter of our module's tasks: logs the start and end of the module's Python process."""
    return '\n'.join([
        'set -e', 'mkdir -p %s' % RUN_DIR,
        "cat > %s <<'WRAP'" % PYTHON_WRAPPER,
        '#!/bin/sh',
        's=$(date +%s%N)',
        '/usr/bin/python3 "$@"',
        'rc=$?',
        'printf \'%%s\\t%%s\\t%%s\\t%%s\\n\' "${BENCH_TAG:--}" "$s" "$(date +%%s%%N)" "$rc" >> %s' % PYTHON_LOG,
        'exit $rc',
        'WRAP',
        'chmod 755 %s' % PYTHON_WRAPPER, ''])


def timing_wrappers(names: tuple) -> str:
    """Wrappers ahead in PATH that log each command's start, end and argv (they run it as a child)."""
    lines = ['set -e', 'mkdir -p %s' % RUN_DIR, ': > %s' % COMMAND_LOG]
    for name in names:
        lines += ['real=$(PATH=/usr/sbin:/usr/bin:/sbin:/bin command -v %s)' % name,
                  'cat > /usr/local/sbin/%s <<WRAP' % name,
                  '#!/bin/sh',
                  's=\\$(date +%s%N)',
                  '$real "\\$@"',
                  'rc=\\$?',
                  'printf \'%%s\\\\t%%s\\\\t%%s\\\\t%%s\\\\t%%s\\\\n\' "\\${BENCH_TAG:--}" "\\$s" '
                  '"\\$(date +%%s%%N)" "\\$rc" "\\${0##*/} \\$*" >> %s' % COMMAND_LOG,
                  'exit \\$rc',
                  'WRAP',
                  'chmod 755 /usr/local/sbin/%s' % name]
    return '\n'.join(lines) + '\n'


def receiver_wrapper() -> str:
    """The receiver, timed: the forced command of the replication key runs this wrapper, which runs it."""
    return '\n'.join([
        'set -e', 'mkdir -p %s' % RUN_DIR,
        'mv %s %s.bench' % (RECEIVER, RECEIVER),
        "cat > %s <<'WRAP'" % RECEIVER,
        '#!/bin/sh',
        's=$(date +%s%N)',
        '%s.bench "$@"' % RECEIVER,
        'rc=$?',
        'printf \'%%s\\t%%s\\t%%s\\t%%s\\t%%s\\n\' receiver "$s" "$(date +%%s%%N)" "$rc" '
        '"receiver $(echo "$SSH_ORIGINAL_COMMAND" | cut -d" " -f1)" >> %s' % COMMAND_LOG,
        'exit $rc',
        'WRAP',
        'chmod 755 %s' % RECEIVER, ''])


def unwrap(names: tuple, receiver: bool) -> str:
    found = ['rm -f %s' % ' '.join('/usr/local/sbin/%s' % n for n in names)]
    if receiver:
        found.append('if [ -f %s.bench ]; then mv -f %s.bench %s; fi' % (RECEIVER, RECEIVER, RECEIVER))
    return '; '.join(found)


def read_log(host: Host, path: str) -> list[list[str]]:
    text = host.ssh('cat %s 2>/dev/null; : > %s' % (path, path))
    return [line.split('\t') for line in text.splitlines() if line.count('\t') >= 3]


# -- the Debian packages of syncoid ----------------------------------------------------------

def sanoid_debs(host: Host, debs: Path) -> list[Path]:
    """sanoid and those of its Depends (recursively) that the guest lacks, downloaded here with apt-get."""
    installed = set()
    listing = host.ssh("dpkg-query -W -f '${Status}\\t${Package}\\t${Provides}\\n'")
    for line in listing.splitlines():
        status, _tab, rest = line.partition('\t')
        if status.endswith(' installed'):
            name, _tab, provides = rest.partition('\t')
            installed.add(name)
            installed.update(p.split()[0] for p in provides.split(',') if p.strip())
    debs.mkdir(parents=True, exist_ok=True)
    wanted, found = ['sanoid'], {}
    while wanted:
        name = wanted.pop()
        if name in found or name in installed:
            continue
        have = sorted(debs.glob('%s_*.deb' % name))
        if not have:
            done = subprocess.run(['apt-get', 'download', name], cwd=str(debs), capture_output=True, text=True,
                                  check=False)
            have = sorted(debs.glob('%s_*.deb' % name))
            if done.returncode != 0 or not have:
                raise BenchError('apt-get download %s failed (run apt-get update first?): %s'
                                 % (name, done.stderr.strip()[-500:]))
        found[name] = have[-1]
        fields = subprocess.run(['dpkg-deb', '-f', str(have[-1]), 'Pre-Depends', 'Depends'], capture_output=True,
                                text=True, check=True).stdout
        for line in fields.splitlines():
            for group in line.partition(':')[2].split(','):
                options = [alt.split()[0].split(':')[0] for alt in group.split('|') if alt.strip()]
                if options and not any(o in installed or o in found for o in options):
                    wanted.append(options[0])
    return [found[n] for n in sorted(found)]


def install_sanoid(host: Host, debs: Path) -> list[str]:
    files = sanoid_debs(host, debs)
    host.ssh('rm -rf /root/bench-debs && mkdir -p /root/bench-debs')
    for path in files:
        host.ssh('cat > /root/bench-debs/%s' % shlex.quote(path.name), stdin=path.read_bytes())
    host.ssh('DEBIAN_FRONTEND=noninteractive dpkg -i /root/bench-debs/*.deb >/dev/null && command -v syncoid')
    return [p.name for p in files]


# -- plays -----------------------------------------------------------------------------------

def raw(name: str, command: str, tag: str | None = None, delegate: str | None = None) -> dict:
    found = {'name': name, 'ansible.builtin.raw': ('export BENCH_TAG=%s; ' % tag if tag else '') + command,
             'changed_when': False, 'timeout': TASK_TIMEOUT}
    if delegate:
        found['delegate_to'] = delegate
    return found


def play(hosts: str, tasks: list, defaults: dict | None = None) -> dict:
    found = {'name': 'bench on %s' % hosts, 'hosts': hosts, 'gather_facts': False, 'tasks': tasks}
    if defaults:
        found['module_defaults'] = defaults
    return found


def ours(name: str, tag: str, module: str, args: dict, check: bool = False) -> dict:
    """One of our modules' tasks, its Python process timed by the interpreter wrapper."""
    found = {'name': name, 'environment': {'BENCH_TAG': tag}, module: args, 'timeout': TASK_TIMEOUT,
             'vars': {'ansible_python_interpreter': PYTHON_WRAPPER}}
    if check:
        found['check_mode'] = True
    return found


TARGET = {'host': '{{ testhost_peers[0].address }}', 'port': '{{ testhost_peers[0].ssh_port }}',
          'key': REPLICATION_KEY, 'known_hosts': KNOWN_HOSTS}


def pools(pool: str, vg: str, directory: str) -> str:
    """A ZFS pool on the host's first extra disk (2 GiB: the large rounds need room) and a volume group with a
    thin pool on a file (as tests/testhost/replica.yml makes it)."""
    return ('set -e; modprobe zfs; zpool create {pool} /dev/vdb; '
            'truncate -s 1G /var/tmp/{vg}.img; pvcreate -q $(losetup -f --show /var/tmp/{vg}.img); '
            'vgcreate -q -s 4M {vg} $(losetup -j /var/tmp/{vg}.img | cut -d: -f1); '
            'lvcreate -q --yes -L 600M -T {vg}/{thin}; mkdir -p {dir}; '.format(pool=pool, vg=vg, thin=THIN_POOL,
                                                                                dir=directory))


def setup_plays() -> list:
    return [
        play(DST, [raw('the target: ZFS pool, volume group with a thin pool, nfs directory',
                       pools(ZPOOL_DST, VG_DST, NFS_DST) + 'for d in %s; do zfs create $d; done'
                       % ' '.join(ZTARGET[c] for c in CONTENDERS))]),
        play(SRC, [
            raw('the source: ZFS pool, volume group with a thin pool, nfs directory, the interpreter wrapper',
                pools(ZPOOL_SRC, VG_SRC, NFS_SRC) + 'zfs create %s; %s' % (ZPARENT, python_wrapper())),
            {'name': 'the replication key pair', 'ansible.builtin.include_role': {
                'name': 'stratum.storage.replication', 'tasks_from': 'keys.yml'}},
            {'name': "read the target's host key", 'ansible.builtin.slurp': {
                'src': '/etc/ssh/ssh_host_ed25519_key.pub'}, 'delegate_to': DST, 'register': 'host_key'},
            {'name': "trust the target's host key", 'ansible.builtin.copy': {
                'content': "[{{ testhost_peers[0].address }}]:{{ testhost_peers[0].ssh_port }} "
                           "{{ (host_key.content | b64decode).split()[:2] | join(' ') }}\n",
                'dest': KNOWN_HOSTS, 'mode': '0644'}},
            {'name': "the harness's root key, for the hand pipeline and syncoid", 'ansible.builtin.copy': {
                'src': str(KEY), 'dest': ROOT_KEY, 'mode': '0600'}},
        ]),
        play(DST, [{'name': 'the receiver', 'ansible.builtin.include_role': {
            'name': 'stratum.storage.replication', 'tasks_from': 'receiver.yml'},
            'vars': {'replication__public_key': "{{ hostvars['%s'].replication__public_key }}" % SRC,
                     'replication_receiver_locations': {'zfs': [ZTARGET['ours']], 'nfs': [NFS_DST],
                                                        'lvm': ['%s/%s' % (VG_DST, THIN_POOL)]},
                     'replication_allowed_from': ['{{ testhost_peer_address }}']}}]),
    ]


class Commands:
    """The shell commands of the references, with the SSH options of our module (_replica.Peer)."""

    def __init__(self, collections: Path, peer: dict, device: str) -> None:
        sys.path.insert(0, str(collections))
        from ansible_collections.stratum.storage.plugins.module_utils._replica import Peer  # noqa: E402
        self.peer = Peer(None, {'host': peer['address'], 'port': int(peer['ssh_port']), 'key': ROOT_KEY,
                                'known_hosts': KNOWN_HOSTS})
        self.replication = Peer(None, {'host': peer['address'], 'port': int(peer['ssh_port']),
                                       'key': REPLICATION_KEY, 'known_hosts': KNOWN_HOSTS})
        self.address, self.port = peer['address'], int(peer['ssh_port'])
        self.device = device

    def ssh(self, words: list) -> str:
        return shlex.join(self.peer.argv(words))

    def counter(self) -> str:
        return 'cat /sys/class/net/%s/statistics/tx_bytes' % self.device

    @staticmethod
    def timed(command: str) -> str:
        """``command`` with its wall time inside the guest on a line of its own."""
        return ('set -o pipefail; s=$(date +%%s%%N); %s; rc=$?; echo "bench-ns $(( $(date +%%s%%N) - s ))"; exit $rc'
                % command)

    def hand(self, snapshot: str, base: str | None, contender: str = 'hand', volume: str = ZVOL) -> str:
        send = 'zfs send %s%s/%s@%s' % ('-i @%s ' % base if base else '', ZPARENT, volume, snapshot)
        receive = ['zfs', 'recv', '-s', '-u', '%s/%s' % (ZTARGET[contender], volume)]
        return self.timed('%s | %s' % (send, self.ssh(receive)))

    def syncoid(self, extra: str = '--quiet') -> str:
        options = ['--no-sync-snap', '--no-stream', '--compress=none', '--sshkey=%s' % ROOT_KEY,
                   '--sshport=%d' % self.port] + ['--sshoption=%s' % o for o in (
                       'BatchMode=yes', 'StrictHostKeyChecking=yes', 'IdentitiesOnly=yes',
                       'UserKnownHostsFile=%s' % KNOWN_HOSTS)]
        return self.timed('syncoid %s %s %s root@%s:%s/%s >> %s/syncoid.log 2>&1' % (
            ' '.join(options), extra, ZDATASET, self.address, ZTARGET['syncoid'], ZVOL, RUN_DIR))


def zfs_change(snapshot: str, base: str, offsets: list[int]) -> str:
    """Write 1 MiB of random data at each offset (MiB), snapshot, and print the `zfs send -i` stream's size."""
    return ('set -e; for o in %s; do dd if=/dev/urandom of=/dev/zvol/%s bs=1M seek=$o count=1 conv=notrunc,fsync '
            'status=none; done; zfs snapshot %s@%s; zfs send -i @%s %s@%s | wc -c; '
            'zfs send -nP -i @%s %s@%s 2>&1 | sed -n "s/^size[[:space:]]*//p"'
            % (' '.join(map(str, offsets)), ZDATASET, ZDATASET, snapshot, base, ZDATASET, snapshot, base, ZDATASET,
               snapshot))


def tag_of(label: str, what: str) -> str:
    """The BENCH_TAG of a task (no spaces: raw tasks export it in the shell)."""
    return '%s/%s' % (label.replace(' ', '-'), what)


def contender_tasks(commands: Commands, label: str, contender: str, snapshot: str, base: str | None,
                    volume: str = ZVOL) -> list:
    tag = tag_of(label, contender)
    if contender == 'ours':
        return [ours('%s ours' % label, tag, 'stratum.storage.replica',
                     {'backend': 'zfs', 'zfs': {'parent': ZPARENT}, 'volume': volume, 'snapshot': snapshot,
                      'target': dict(TARGET, zfs={'parent': ZTARGET['ours']})})]
    if contender == 'hand':
        return [raw('%s hand' % label, commands.hand(snapshot, base, volume=volume), tag)]
    if contender == 'shell':  # the same pipeline as a playbook would run it: a module task
        return [{'name': '%s shell' % label, 'ansible.builtin.shell': commands.hand(snapshot, base, 'shell'),
                 'args': {'executable': '/bin/bash'}, 'environment': {'BENCH_TAG': tag}, 'changed_when': False,
                 'timeout': TASK_TIMEOUT}]
    return [raw('%s syncoid' % label, commands.syncoid('--debug' if base is None else '--quiet'), tag)]


def zfs_round_tasks(commands: Commands, label: str, snapshot: str, base: str | None, order: list,
                    offsets: list[int] | None) -> list:
    """One round: the change (or the first fill), a raw no-op, our check mode, then each contender between
    readings of the network counter."""
    if base is None:
        change = ('set -e; zfs create -V %dM -o volblocksize=16K %s; udevadm settle; dd if=/dev/urandom '
                  'of=/dev/zvol/%s bs=1M count=%d conv=fsync status=none; zfs snapshot %s@%s; zfs send %s@%s | wc -c; '
                  'zfs send -nP %s@%s 2>&1 | sed -n "s/^size[[:space:]]*//p"'
                  % (VOLUME_MIB, ZDATASET, ZDATASET, VOLUME_MIB, ZDATASET, snapshot, ZDATASET, snapshot, ZDATASET,
                     snapshot))
    else:
        change = zfs_change(snapshot, base, offsets)
    tasks = [raw('%s change' % label, change, tag_of(label, 'change')),
             raw('%s raw no-op' % label, 'true'),
             ours('%s ours check mode' % label, tag_of(label, 'check'), 'stratum.storage.replica',
                  {'backend': 'zfs', 'zfs': {'parent': ZPARENT}, 'volume': ZVOL, 'snapshot': snapshot,
                   'target': dict(TARGET, zfs={'parent': ZTARGET['ours']})}, check=True),
             raw('%s counter 0' % label, commands.counter())]
    for index, contender in enumerate(order):
        tasks += contender_tasks(commands, label, contender, snapshot, base)
        tasks.append(raw('%s counter %d' % (label, index + 1), commands.counter()))
    return tasks


#: the SHA-256 of snapshot {snap} of zvol {ds}, read from its device node (shown for the read)
ZVOL_DIGEST = ('zfs set snapdev=visible {ds}; udevadm settle; '
               'sha256sum < /dev/zvol/{ds}@{snap} | cut -d" " -f1; zfs inherit snapdev {ds}')


def zfs_digests(snapshot: str) -> list:
    there = '; '.join(ZVOL_DIGEST.format(ds='%s/%s' % (ZTARGET[c], ZVOL), snap=snapshot) for c in CONTENDERS)
    return [raw('zfs digest source', ZVOL_DIGEST.format(ds=ZDATASET, snap=snapshot)),
            raw('zfs digest targets', there, delegate=DST)]


def large_tasks(commands: Commands, rounds: int, large_mib: int) -> tuple[list, list]:
    """The large rounds: a zvol of ``large_mib`` MiB of random data replicated in full by ours and the hand
    pipeline, then ``rounds`` incrementals that each rewrite all of it, the two contenders one after the other in
    an order that alternates. Returns the tasks and the labels of the incrementals."""
    dataset = '%s/%s' % (ZPARENT, LARGE_ZVOL)
    fill = ('dd if=/dev/urandom of=/dev/zvol/{ds} bs=1M count={mib} conv=fsync status=none; zfs snapshot {ds}@{snap}'
            '; zfs send {base}{ds}@{snap} | wc -c')
    tasks = [raw('large full change', 'set -e; zfs create -V %dM -o volblocksize=16K %s; udevadm settle; %s'
                 % (large_mib, dataset, fill.format(ds=dataset, mib=large_mib, snap='l0', base='')))]
    for contender in LARGE_CONTENDERS:
        tasks += contender_tasks(commands, 'large full', contender, 'l0', None, LARGE_ZVOL)
    labels = []
    for index in range(1, rounds + 1):
        label = 'large round %d' % index
        labels.append(label)
        snapshot, base = 'l%d' % index, 'l%d' % (index - 1)
        tasks.append(raw('%s change' % label, 'set -e; ' + fill.format(ds=dataset, mib=large_mib, snap=snapshot,
                                                                       base='-i @%s ' % base),
                         tag_of(label, 'change')))
        order = LARGE_CONTENDERS if index % 2 else LARGE_CONTENDERS[::-1]
        for contender in order:
            tasks += contender_tasks(commands, label, contender, snapshot, base, LARGE_ZVOL)
    last = 'l%d' % rounds
    tasks += [raw('large digest source', ZVOL_DIGEST.format(ds=dataset, snap=last)),
              raw('large digest targets', '; '.join(
                  ZVOL_DIGEST.format(ds='%s/%s' % (ZTARGET[c], LARGE_ZVOL), snap=last) for c in LARGE_CONTENDERS),
                  delegate=DST)]
    return tasks, labels


def large_results(tasks: list[dict], labels: list[str], spans: dict) -> dict:
    named = dict((t['name'], t) for t in tasks)
    source = stdout_of(named['large digest source'])
    there = stdout_of(named['large digest targets'])
    if not source or there != source * len(LARGE_CONTENDERS):
        raise BenchError('a replica of the large zvol differs from the source: %s against %s' % (there, source))
    found = []
    for label in ['large full'] + labels:
        change = stdout_of(named['large full change' if label == 'large full' else '%s change' % label])
        entry = {'label': label, 'stream_bytes': int(change[-1]), 'contenders': {}}
        for contender in LARGE_CONTENDERS:
            task = named['%s %s' % (label, contender)]
            figures = {'task_s': task['seconds']}
            if contender == 'ours':
                figures['bytes_sent'] = ((task['summary'].get('replica') or {}).get('details') or {}).get('bytes_sent')
                figures['guest_s'] = spans.get(tag_of(label, 'ours'))
            else:
                figures['guest_s'] = guest_seconds(task)
            entry['contenders'][contender] = figures
        found.append(entry)
    return {'full': found[0], 'rounds': found[1:], 'digest': source[0]}


def large_rows(small: list[dict], large: dict) -> list[dict]:
    """Z6: the large incremental, ours against the hand pipeline; Z7: what a MiB more costs each of them, from
    the medians of the small rounds to those of the large ones (the fixed cost of a run drops out)."""
    rounds = large['rounds']

    def at(entries: list[dict], contender: str, key: str = 'task_s') -> float:
        return median([r['contenders'][contender][key] for r in entries])

    stream_small = median([r['stream_bytes'] for r in small]) / MIB
    stream_large = median([r['stream_bytes'] for r in rounds]) / MIB
    per_mib = dict((c, (at(rounds, c) - at(small, c)) / (stream_large - stream_small)) for c in LARGE_CONTENDERS)
    hand = 'hand pipeline (raw task)'
    ours_s = spread([r['contenders']['ours']['task_s'] for r in rounds])
    hand_s = spread([r['contenders']['hand']['task_s'] for r in rounds])
    paired = median([r['contenders']['ours']['task_s'] / r['contenders']['hand']['task_s'] for r in rounds])
    return [
        ratio_row('Z6', 'ZFS incremental of %.0f MiB: wall time (task)' % stream_large, fmt_spread(ours_s), hand,
                  fmt_spread(hand_s), paired, TARGETS['zfs wall']),
        ratio_row('Z7', 'ZFS incremental: seconds a MiB more (%.0f to %.0f)' % (stream_small, stream_large),
                  '%.4f s/MiB' % per_mib['ours'], hand, '%.4f s/MiB' % per_mib['hand'],
                  per_mib['ours'] / per_mib['hand'], None),
        ratio_row('Z8', 'ZFS incremental of %.0f MiB: bytes sent' % stream_large,
                  mib(median([r['contenders']['ours']['bytes_sent'] for r in rounds])), 'zfs send -i stream (wc -c)',
                  mib(median([r['stream_bytes'] for r in rounds])),
                  max(r['contenders']['ours']['bytes_sent'] / r['stream_bytes'] for r in rounds), TARGETS['zfs bytes']),
    ]


def block_write(backend: str, offsets: list[int], pattern: int) -> str:
    """Write 1 MiB at each offset (MiB) of the volume: random data into the thin LV, a pattern into the qcow2 file."""
    volume = BLOCK_VOLUMES[backend]
    if backend == 'lvm thin':
        return ('set -e; for o in %s; do dd if=/dev/urandom of=/dev/%s/volume-%s bs=1M seek=$o count=1 '
                'conv=notrunc,fsync status=none; done' % (' '.join(map(str, offsets)), VG_SRC, volume))
    writes = ' '.join("-c 'write -P 0x%02x %dM 1M'" % ((pattern + i) % 255 + 1, o) for i, o in enumerate(offsets))
    return ('set -e; cd %s; a=$(python3 -c \'import json; print(json.load(open("volume-%s.info"))["active"])\' '
            '2>/dev/null || echo volume-%s); qemu-io -f qcow2 %s "$a" >/dev/null' % (NFS_SRC, volume, volume, writes))


def block_defaults(backend: str) -> dict:
    if backend == 'lvm thin':
        return {'backend': 'lvm', 'lvm': {'vg': VG_SRC, 'thin_pool': THIN_POOL}}
    return {'backend': 'nfs', 'nfs': {'path': NFS_SRC}}


def block_target(backend: str) -> dict:
    if backend == 'lvm thin':
        return dict(TARGET, lvm={'vg': VG_DST, 'thin_pool': THIN_POOL})
    return dict(TARGET, nfs={'path': NFS_DST})


def block_tasks(backend: str, rounds: int) -> tuple[list, list]:
    """A full replica of FULL_MIB written, then ``rounds`` incrementals of CHANGE_MIB; and each round's offsets."""
    volume = BLOCK_VOLUMES[backend]
    extra = {} if backend == 'lvm thin' else {'format': 'qcow2'}
    tasks = [ours('%s volume' % backend, tag_of(backend, 'setup'), 'stratum.storage.volume',
                  dict(block_defaults(backend), name=volume, size='%dM' % VOLUME_MIB, **extra))]
    changes = []
    for index in range(rounds + 1):
        label = '%s %s' % (backend, 'full' if index == 0 else 'incremental %d' % index)
        offsets = list(range(FULL_MIB)) if index == 0 else sorted(
            random.Random('%s-%d' % (backend, index)).sample(range(VOLUME_MIB), CHANGE_MIB))
        changes.append(offsets)
        tasks += [raw('%s write' % label, block_write(backend, offsets, index * 16)),
                  ours('%s snapshot' % label, tag_of(backend, 'setup'), 'stratum.storage.snapshot',
                       dict(block_defaults(backend), volume=volume, name='s%d' % index)),
                  ours('%s ours' % label, tag_of(backend, str(index)), 'stratum.storage.replica',
                       dict(block_defaults(backend), volume=volume, snapshot='s%d' % index,
                            target=block_target(backend)))]
    last = 's%d' % rounds
    if backend == 'lvm thin':
        tasks += [raw('%s digest source' % backend, 'sha256sum < /dev/%s/volume-%s.%s | cut -d" " -f1'
                      % (VG_SRC, volume, last)),
                  raw('%s digest target' % backend, 'sha256sum < /dev/%s/volume-%s.%s | cut -d" " -f1'
                      % (VG_DST, volume, last), delegate=DST)]
    else:
        digest = ('cd {dir} && qemu-img convert -U -O raw {image} /var/tmp/bench.raw && sha256sum < /var/tmp/bench.raw '
                  '| cut -d" " -f1 && rm -f /var/tmp/bench.raw')
        tasks[-2]['register'] = 'last_snapshot'
        tasks[-1]['register'] = 'last_replica'
        tasks += [raw('%s digest source' % backend, digest.format(
                      dir=NFS_SRC, image='{{ last_snapshot.snapshot.details.image }}')),
                  raw('%s digest target' % backend, digest.format(
                      dir=NFS_DST, image='{{ last_replica.replica.details.image }}'), delegate=DST)]
    return tasks, changes


# -- figures ---------------------------------------------------------------------------------

def stdout_of(task: dict) -> list[str]:
    return [line.strip() for line in (task['summary'].get('stdout') or '').splitlines() if line.strip()]


def guest_times(task: dict) -> dict:
    """The ``bench-ns [name] NANOSECONDS`` lines of a raw task: name (``-`` without one) -> seconds."""
    found: dict = {}
    for line in stdout_of(task):
        words = line.split()
        if len(words) >= 2 and words[0] == 'bench-ns':
            found.setdefault(' '.join(words[1:-1]) or '-', []).append(int(words[-1]) / 1e9)
    return found


def guest_seconds(task: dict) -> float | None:
    times = guest_times(task).get('-')
    return times[-1] if times else None


def python_spans(rows: list[list[str]]) -> dict:
    """Tag -> seconds of the module's Python process (the last one with that tag)."""
    return dict((r[0], (int(r[2]) - int(r[1])) / 1e9) for r in rows)


def zfs_rounds(tasks: list[dict], labels: list[str], orders: list[list[str]], spans: dict) -> list[dict]:
    named = dict((t['name'], t) for t in tasks)
    found = []
    for label, order in zip(labels, orders):
        change = stdout_of(named['%s change' % label])
        counters = [int(stdout_of(named['%s counter %d' % (label, i)])[0]) for i in range(len(order) + 1)]
        entry = {'label': label, 'order': order, 'stream_bytes': int(change[0]), 'estimated_bytes': int(change[1]),
                 'raw_noop_s': named['%s raw no-op' % label]['seconds'],
                 'check_s': named['%s ours check mode' % label]['seconds'],
                 'check_process_s': spans.get(tag_of(label, 'check')), 'contenders': {}}
        for index, contender in enumerate(order):
            task = named['%s %s' % (label, contender)]
            figures = {'task_s': task['seconds'], 'wire_bytes': counters[index + 1] - counters[index]}
            if contender == 'ours':
                replica = task['summary'].get('replica') or {}
                figures['bytes_sent'] = (replica.get('details') or {}).get('bytes_sent')
                figures['guest_s'] = spans.get(tag_of(label, 'ours'))
                figures['actions'] = task['summary'].get('actions')
            else:
                figures['guest_s'] = guest_seconds(task)
            entry['contenders'][contender] = figures
        found.append(entry)
    return found


def ratio_row(case: str, what: str, ours_text: str, reference: str, ref_text: str, ratio: float,
              target: float | None, met: bool | None = None) -> dict:
    if met is None and target is not None:
        met = ratio <= target
    return {'case': case, 'what': what, 'ours': ours_text, 'reference': reference, 'ref': ref_text, 'ratio': ratio,
            'target': '<= %.2fx' % target if target is not None else '-', 'met': met if target is not None else None}


def mib(value: float) -> str:
    return '%.2f MiB' % (value / MIB)


def median(values: list[float]) -> float:
    return spread(values)['median']


def zfs_rows(full: dict, rounds: list[dict]) -> list[dict]:
    """The ZFS rows. A time ratio is the median of the rounds' ratios: the contenders of a round run one after the
    other, so each round's ratio sets them beside each other under the same load on this machine."""
    def figures(contender: str, key: str) -> dict:
        return spread([r['contenders'][contender][key] for r in rounds])

    def paired(a: str, b: str, key: str) -> float:
        return median([r['contenders'][a][key] / r['contenders'][b][key] for r in rounds])

    bytes_ratios = [r['contenders']['ours']['bytes_sent'] / r['stream_bytes'] for r in rounds]
    stream = median([r['stream_bytes'] for r in rounds])
    ours_s, hand_s, shell_s, sync_s = (figures(c, 'task_s') for c in CONTENDERS)
    ours_g, hand_g, _shell_g, sync_g = (figures(c, 'guest_s') for c in CONTENDERS)
    ours_w, hand_w, _shell_w, sync_w = (figures(c, 'wire_bytes')['median'] for c in CONTENDERS)
    hand = 'hand pipeline (raw task)'
    c = full['contenders']
    return [
        ratio_row('Z1', 'ZFS incremental: bytes sent', mib(figures('ours', 'bytes_sent')['median']),
                  'zfs send -i stream (wc -c)', mib(stream), median(bytes_ratios), TARGETS['zfs bytes'],
                  max(bytes_ratios) <= TARGETS['zfs bytes']),
        ratio_row('Z2', 'ZFS incremental: wall time (Ansible task)', fmt_spread(ours_s), hand, fmt_spread(hand_s),
                  paired('ours', 'hand', 'task_s'), TARGETS['zfs wall']),
        ratio_row('Z3', 'ZFS incremental: wall time in the guest', fmt_spread(ours_g), 'the pipeline itself',
                  fmt_spread(hand_g), paired('ours', 'hand', 'guest_s'), None),
        ratio_row('Z4', 'ZFS incremental: bytes on the wire (tx_bytes)', mib(ours_w), hand, mib(hand_w),
                  paired('ours', 'hand', 'wire_bytes'), None),
        ratio_row('Z5', 'ZFS incremental: wall time against a module task', fmt_spread(ours_s),
                  'hand pipeline (shell task)', fmt_spread(shell_s), paired('ours', 'shell', 'task_s'), None),
        ratio_row('S1', 'syncoid incremental: wall time (Ansible task)', fmt_spread(sync_s), hand, fmt_spread(hand_s),
                  paired('syncoid', 'hand', 'task_s'), None),
        ratio_row('S2', 'syncoid incremental: wall time in the guest', fmt_spread(sync_g), 'the pipeline itself',
                  fmt_spread(hand_g), paired('syncoid', 'hand', 'guest_s'), None),
        ratio_row('S3', 'syncoid incremental: bytes on the wire', mib(sync_w), hand, mib(hand_w),
                  paired('syncoid', 'hand', 'wire_bytes'), None),
        ratio_row('S4', 'ours against syncoid: wall time (Ansible task)', fmt_spread(ours_s), 'syncoid (raw task)',
                  fmt_spread(sync_s), paired('ours', 'syncoid', 'task_s'), None),
        ratio_row('F1', 'ZFS full (one run): bytes sent', mib(c['ours']['bytes_sent']), 'zfs send stream (wc -c)',
                  mib(full['stream_bytes']), c['ours']['bytes_sent'] / full['stream_bytes'], TARGETS['zfs bytes']),
        ratio_row('F2', 'ZFS full (one run): wall time (Ansible task)', '%s s' % fmt(c['ours']['task_s']), hand,
                  '%s s' % fmt(c['hand']['task_s']), c['ours']['task_s'] / c['hand']['task_s'], None),
        ratio_row('F3', 'ZFS full (one run): syncoid wall time', '%s s (syncoid)' % fmt(c['syncoid']['task_s']), hand,
                  '%s s' % fmt(c['hand']['task_s']), c['syncoid']['task_s'] / c['hand']['task_s'], None),
    ]


def zfs_fits(full: dict, rounds: list[dict]) -> dict:
    """Ours and the hand pipeline: task seconds = fixed + per MiB of stream, a line through the full run and the
    rounds (the full run also creates the zvol; syncoid's first run takes another path, so it has no line)."""
    return dict((contender, run.fit([(r['stream_bytes'] / MIB, r['contenders'][contender]['task_s'])
                                     for r in [full] + rounds])) for contender in ('ours', 'hand'))


def block_results(backend: str, tasks: list[dict], changes: list[list[int]], spans: dict) -> dict:
    named = dict((t['name'], t) for t in tasks)
    runs = []
    for index, offsets in enumerate(changes):
        label = '%s %s' % (backend, 'full' if index == 0 else 'incremental %d' % index)
        task = named['%s ours' % label]
        replica = task['summary'].get('replica') or {}
        details = replica.get('details') or {}
        runs.append({'label': label, 'run': 'full' if index == 0 else 'incremental %d' % index,
                     'changed_bytes': len(offsets) * MIB, 'bytes_sent': details.get('bytes_sent'),
                     'base': details.get('base'), 'task_s': task['seconds'],
                     'guest_s': spans.get(tag_of(backend, str(index))), 'offsets_mib': offsets})
    source = stdout_of(named['%s digest source' % backend])
    target = stdout_of(named['%s digest target' % backend])
    if not source or source != target:
        raise BenchError('%s: the last replica differs from its source (%s, %s)' % (backend, source, target))
    return {'runs': runs, 'digest': source[0]}


def block_rows(backend: str, result: dict, case: str) -> list[dict]:
    runs = result['runs']
    full, incr = runs[0], runs[1:]
    ratios = [r['bytes_sent'] / r['changed_bytes'] for r in incr]
    return [
        ratio_row(case + '1', '%s full: bytes sent' % backend, mib(full['bytes_sent']), 'data written',
                  mib(full['changed_bytes']), full['bytes_sent'] / full['changed_bytes'], TARGETS['block bytes']),
        ratio_row(case + '2', '%s incremental: bytes sent' % backend,
                  '%s (median)' % mib(median([r['bytes_sent'] for r in incr])), 'data changed',
                  mib(incr[0]['changed_bytes']), median(ratios), TARGETS['block bytes'],
                  max(ratios) <= TARGETS['block bytes'])]


# -- the profile -----------------------------------------------------------------------------

def union(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of ``spans``."""
    total, end = 0.0, None
    for start, stop in sorted(spans):
        if end is None or start > end:
            total += stop - start
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total


def kind_of(argv: str) -> str:
    """The part of our module's run that a command on the source belongs to."""
    words = argv.split()
    if words[0] == 'ssh':
        verb = next((w for w in reversed(words) if w in ('info', 'session', 'receive', 'abort', 'delete')), None)
        return {'info': 'info call', 'session': 'session (info, then transfer)', 'receive': 'transfer'}.get(
            verb, 'ssh other')
    if words[:2] == ['zfs', 'send']:
        return 'transfer'
    if words[:2] in (['zfs', 'hold'], ['zfs', 'release']):
        return 'holds'
    return 'source reads'


def short(argv: str) -> str:
    return 'ssh ' + kind_of(argv) if argv.startswith('ssh') else ' '.join(argv.split()[:2])


def commands_of(rows: list[list[str]], tag: str) -> list[tuple[float, float, str]]:
    return sorted((int(r[1]) / 1e9, int(r[2]) / 1e9, r[4]) for r in rows if r[0] == tag and len(r) >= 5)


def module_breakdown(py_rows: list[list[str]], src_rows: list[list[str]], tag: str, task_s: float) -> dict | None:
    """Our module's run: the Python process from the interpreter wrapper, its commands from the wrappers."""
    py = [(int(r[1]) / 1e9, int(r[2]) / 1e9) for r in py_rows if r[0] == tag]
    mine = commands_of(src_rows, tag)
    if not py or not mine:
        return None
    start, end = py[-1]
    parts = {}
    for kind in ('info call', 'session (info, then transfer)', 'source reads', 'transfer', 'holds', 'ssh other'):
        spans = [(s, e) for s, e, argv in mine if kind_of(argv) == kind]
        if spans:
            parts[kind] = union(spans)
    found = {'task_s': task_s, 'process_s': end - start, 'startup_s': mine[0][0] - start,
             'exit_s': end - max(e for _s, e, _a in mine), 'in_commands_s': union([(s, e) for s, e, _a in mine]),
             'parts': parts,
             'timeline': [{'at': round(s - start, 3), 'seconds': round(e - s, 3), 'what': short(argv)}
                          for s, e, argv in mine]}
    found['python_between_s'] = found['process_s'] - found['startup_s'] - found['exit_s'] - found['in_commands_s']
    return found


#: whose receiver calls come in the profile round, in order (see profile_tasks)
RECEIVER_CALLS = [('check', 'session'), ('ours', 'session')] + [('new connection', 'info')] * 3 + [
    ('shared connection', 'info')] * 3


def target_side(dst_rows: list[list[str]]) -> dict:
    """The receiver's calls on the target with the zfs commands inside each, and the references' zfs commands."""
    rows = sorted((int(r[1]) / 1e9, int(r[2]) / 1e9, r[0], r[4]) for r in dst_rows if len(r) >= 5)
    calls = [r for r in rows if r[2] == 'receiver']
    inside: set = set()
    found: dict = {'calls': [], 'references': {}}
    for index, (start, end, _tag, what) in enumerate(calls):
        mine = [r for r in rows if r[2] != 'receiver' and start <= r[0] <= end]
        inside.update(mine)
        who, verb = RECEIVER_CALLS[index] if index < len(RECEIVER_CALLS) else ('?', '?')
        found['calls'].append({
            'of': who if verb == what.split()[-1] else '?', 'verb': what.split()[-1], 'seconds': end - start,
            'until_first_command': (mine[0][0] - start) if mine else end - start,
            'zfs_seconds': union([(r[0], r[1]) for r in mine]),
            'commands': [{'what': ' '.join(r[3].split()[:2]), 'seconds': round(r[1] - r[0], 3)} for r in mine]})
    for start, end, _tag, what in rows:
        if (start, end, _tag, what) in inside or _tag == 'receiver':
            continue
        who = next((c for c in ('hand', 'shell', 'syncoid') if ZTARGET[c] in what), 'other')
        found['references'].setdefault(who, []).append({'what': ' '.join(what.split()[:2]),
                                                        'seconds': round(end - start, 3)})
    return found


def profile(src_rows: list[list[str]], dst_rows: list[list[str]], py_rows: list[list[str]], tasks: list[dict],
            label: str) -> dict:
    """Where the time of our module's run (and of the references) went, from the wrappers' logs."""
    named = dict((t['name'], t) for t in tasks)
    found: dict = {'commands': {}}
    for who in ('check', 'ours', 'hand', 'syncoid'):
        programs: dict = {}
        for _s, _e, argv in commands_of(src_rows, tag_of(label, who)):
            key = short(argv) if argv.startswith('zfs') else argv.split()[0]
            programs[key] = programs.get(key, 0) + 1
        task = named['%s %s' % (label, 'ours check mode' if who == 'check' else who)]
        found['commands'][who] = {'count': sum(programs.values()), 'programs': programs, 'task_s': task['seconds'],
                                  'guest_s': guest_seconds(task)}
    for who, name in (('ours', 'ours'), ('check', 'ours check mode')):
        found[who] = module_breakdown(py_rows, src_rows, tag_of(label, who), named['%s %s' % (label, name)]['seconds'])
    found['target'] = target_side(dst_rows)
    spans = python_spans(py_rows)
    found['command module'] = {'task_s': named['%s command module' % label]['seconds'],
                               'process_s': spans.get(tag_of(label, 'command'))}
    for name in ('ssh login', 'receiver info call', 'shared connection', 'relay', 'receiver imports'):
        found[name] = guest_times(named['%s %s' % (label, name)])
    imports = []
    for line in stdout_of(named['%s receiver imports' % label]):
        fields = [f.strip() for f in line.split('|')]
        if line.startswith('import time:') and len(fields) == 3 and fields[1].isdigit():
            imports.append((int(fields[1]), fields[2]))
    found['slowest imports'] = [{'module': m, 'cumulative_ms': us / 1000.0} for us, m in sorted(imports)[::-1][:6]]
    return found


def profile_tasks(commands: Commands, label: str, snapshot: str, base: str, offsets: list[int]) -> list:
    """The profile round: a change, our check mode, the three contenders, then the floors that explain them."""
    args = {'backend': 'zfs', 'zfs': {'parent': ZPARENT}, 'volume': ZVOL, 'snapshot': snapshot,
            'target': dict(TARGET, zfs={'parent': ZTARGET['ours']})}
    tasks = [raw('%s change' % label, zfs_change(snapshot, base, offsets), tag_of(label, 'change')),
             ours('%s ours check mode' % label, tag_of(label, 'check'), 'stratum.storage.replica', args, check=True)]
    for contender in CONTENDERS:
        tasks += contender_tasks(commands, label, contender, snapshot, base)
    info = commands.replication.argv(['info', 'zfs', ZTARGET['ours'], ZVOL], stdin=False)
    path = RUN_DIR + '/shared'
    master = info[:-2] + ['-o', 'ControlMaster=yes', '-o', 'ControlPath=' + path, '-f', '-N', info[-2]]
    shared = info[:-2] + ['-o', 'ControlMaster=no', '-o', 'ControlPath=' + path] + info[-2:]

    def three(command: str, name: str = '') -> str:
        return ('for i in 1 2 3; do s=$(date +%%s%%N); %s >/dev/null; echo "bench-ns %s$(( $(date +%%s%%N) - s ))"; '
                'done' % (command, name + ' ' if name else ''))

    stream = 'zfs send -i @%s %s@%s' % (base, ZDATASET, snapshot)
    relay = ("python3 -c 'import sys\ni, o = sys.stdin.buffer, sys.stdout.buffer\nwhile True:\n"
             "    b = i.read1(1 << 20)\n    if not b:\n        break\n    o.write(b)\n'")
    lib = '/usr/local/lib/stratum-storage'
    module = 'ansible_collections.stratum.storage.plugins.module_utils._receiver'
    importing = 'python3 -c "import sys; sys.path.insert(0, \'%s\'); import %s"' % (lib, module)
    tasks += [
        ours('%s command module' % label, tag_of(label, 'command'), 'ansible.builtin.command', {'argv': ['true']}),
        raw('%s ssh login' % label, three(commands.ssh(['true']))),
        raw('%s receiver info call' % label, three(shlex.join(info))),
        raw('%s shared connection' % label, 's=$(date +%%s%%N); %s; echo "bench-ns set-up $(( $(date +%%s%%N) - s ))"; '
            '%s; ssh -o ControlPath=%s -O exit %s 2>/dev/null'
            % (shlex.join(master), three(shlex.join(shared)), path, info[-2])),
        raw('%s relay' % label, '; '.join(three('%s %s' % (stream, tail), name) for name, tail in (
            ('to-dev-null', '> /dev/null'), ('through-cat', '| cat > /dev/null'),
            ('through-a-Python-relay', '| %s > /dev/null' % relay)))),
        raw('%s receiver imports' % label, '%s; %s; python3 -X importtime -c "import sys; sys.path.insert(0, \'%s\'); '
            'import %s" 2>&1 | sort -t"|" -k2 -n | tail -n 12'
            % (three('python3 -c pass', 'python3-c-pass'), three(importing, 'import-_receiver'), lib, module),
            delegate=DST),
    ]
    return tasks


# -- the table -------------------------------------------------------------------------------

def seconds_list(values: list[float]) -> str:
    return ', '.join(fmt(v) for v in values)


def breakdown_lines(name: str, b: dict) -> list[str]:
    parts = ', '.join('%s %s s' % (k, fmt(v)) for k, v in b['parts'].items())
    task = '  %s: task %s s = Ansible (connection, module transfer) %s s + module process %s s' % (
        name, fmt(b['task_s']), fmt(b['task_s'] - b['process_s']), fmt(b['process_s']))
    process = '    process: start-up until its first command %s s, %s, Python between commands %s s, exit %s s' % (
        fmt(b['startup_s']), parts, fmt(b['python_between_s']), fmt(b['exit_s']))
    commands = '    commands: %s' % ', '.join('%s at %.2f (%.2f s)' % (t['what'], t['at'], t['seconds'])
                                              for t in b['timeline'])
    return [task, process, commands]


def table(results: dict) -> str:
    row_format = '%-4s %-46s %-27s %-26s %-27s %6s  %-9s %s'
    lines = [row_format % ('case', 'what', 'ours', 'reference', 'reference figure', 'ratio', 'target', 'met')]
    for row in results['rows']:
        met = {True: 'yes', False: 'NO', None: '-'}[row['met']]
        lines.append(row_format % (row['case'], row['what'][:46], row['ours'][:27], row['reference'][:26],
                                   row['ref'][:27], '%5.3fx' % row['ratio'], row['target'], met))
    zfs = results['zfs']
    lines += ['', 'ZFS runs (%d MiB zvol of random data, then %d MiB changed a round; Ansible task / in the guest '
              'seconds, MiB on the wire):' % (VOLUME_MIB, CHANGE_MIB)]
    for r in [zfs['full']] + zfs['rounds']:
        parts = ['%s %s/%s s %.2f MiB' % (c, fmt(r['contenders'][c]['task_s']), fmt(r['contenders'][c]['guest_s'] or 0),
                                          r['contenders'][c]['wire_bytes'] / MIB) for c in r['order']]
        times = dict((c, r['contenders'][c]['task_s']) for c in CONTENDERS)
        lines.append('  %-12s stream %.4f MiB (zfs send -nP %.2f), ours sent %.4f MiB; %s; ours / hand %.2fx, '
                     'ours / shell %.2fx, syncoid / hand %.2fx; our check mode %s/%s s; a raw no-op %s s' % (
                         r['label'], r['stream_bytes'] / MIB, r['estimated_bytes'] / MIB,
                         r['contenders']['ours']['bytes_sent'] / MIB, '; '.join(parts), times['ours'] / times['hand'],
                         times['ours'] / times['shell'], times['syncoid'] / times['hand'], fmt(r['check_s']),
                         fmt(r['check_process_s'] or 0), fmt(r['raw_noop_s'])))
    lines.append('  task seconds against MiB of stream, a line through the full run and the rounds: %s' % '; '.join(
        '%s %s s + %.3f s/MiB' % (key, fmt(f['fixed']), f['per_volume']) for key, f in zfs['fits'].items()))
    large = results.get('large')
    if large:
        lines += ['', 'Large rounds (a %d MiB zvol of random data, rewritten whole each round; ours and the hand '
                  'pipeline, Ansible task / in the guest seconds):' % results['config']['large_mib']]
        for r in [large['full']] + large['rounds']:
            lines.append('  %-14s stream %.2f MiB, ours sent %.2f MiB; %s' % (
                r['label'], r['stream_bytes'] / MIB, (r['contenders']['ours']['bytes_sent'] or 0) / MIB, '; '.join(
                    '%s %s/%s s' % (c, fmt(r['contenders'][c]['task_s']), fmt(r['contenders'][c]['guest_s'] or 0))
                    for c in LARGE_CONTENDERS)))
    for backend in ('lvm thin', 'qcow2'):
        lines.append('  %s: %s' % (backend, '; '.join(
            '%s %.4f MiB sent for %d MiB in %s s (module %s s)' % (
                r['run'], r['bytes_sent'] / MIB, r['changed_bytes'] // MIB, fmt(r['task_s']), fmt(r['guest_s'] or 0))
            for r in results['blocks'][backend]['runs'])))
    prof = results.get('profile') or {}
    lines += ['', 'Where the time of one ZFS incremental goes (one more round, with timing wrappers around zfs, ssh '
              'and the receiver):']
    for who in ('ours', 'check'):
        if prof.get(who):
            lines += breakdown_lines({'ours': 'ours', 'check': 'ours in check mode'}[who], prof[who])
    for call in prof.get('target', {}).get('calls', []):
        if call['of'] in ('ours', 'check'):
            lines.append('    receiver %s (%s) on the target: %s s, until its first zfs command %s s, %d zfs commands '
                         '%s s (%s)' % (call['verb'], call['of'], fmt(call['seconds']),
                                        fmt(call['until_first_command']), len(call['commands']),
                                        fmt(call['zfs_seconds']),
                                        ', '.join('%s %.2f' % (c['what'], c['seconds']) for c in call['commands'])))
    for who in ('hand', 'syncoid'):
        c = (prof.get('commands') or {}).get(who)
        if c:
            there = prof['target']['references'].get(who, [])
            lines.append('  %s: task %s s, in the guest %s s; %d commands on the source (%s); on the target %s' % (
                who, fmt(c['task_s']), fmt(c['guest_s'] or 0), c['count'],
                ', '.join('%s %d' % kv for kv in sorted(c['programs'].items())),
                ', '.join('%s %.2f s' % (x['what'], x['seconds']) for x in there) or '-'))
    if prof.get('command module'):
        m = prof['command module']
        lines.append('  a module of ansible-core (ansible.builtin.command true): task %s s, Python process %s s' % (
            fmt(m['task_s']), fmt(m['process_s'] or 0)))
    for name, text in (('ssh login', 'an SSH login from the source to the target (root key, true)'),
                       ('receiver info call', 'a receiver info call, a new SSH connection each')):
        if prof.get(name):
            lines.append('  %s: %s s' % (text, seconds_list(prof[name].get('-', []))))
    if prof.get('shared connection'):
        s = prof['shared connection']
        lines.append('  the same info call over one shared SSH connection (ControlMaster): %s s, after setting up the '
                     'connection once in %s s' % (seconds_list(s.get('-', [])), seconds_list(s.get('set-up', []))))
    if prof.get('receiver imports'):
        i = prof['receiver imports']
        lines.append('  on the target: python3 -c pass %s s; importing _receiver %s s; slowest imports (cumulative): %s'
                     % (seconds_list(i.get('python3-c-pass', [])), seconds_list(i.get('import-_receiver', [])),
                        ', '.join('%s %.0f ms' % (x['module'], x['cumulative_ms'])
                                  for x in prof.get('slowest imports', []))))
    if prof.get('relay'):
        lines.append('  the round\'s zfs send -i on the source: %s' % '; '.join(
            '%s %s s' % (name.replace('-', ' '), seconds_list(values)) for name, values in prof['relay'].items()))
    lines += ['', 'syncoid: %s, from %s; its full run with --debug is in %s' % (
        results.get('syncoid_version', '?'), ', '.join(results.get('debs', [])), results['workdir'] + '/syncoid.log')]
    return '\n'.join(lines)


# -- the run ---------------------------------------------------------------------------------

def run_bench(args, results: dict) -> None:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in ('ansible.log', 'tasks.jsonl'):
        with contextlib.suppress(FileNotFoundError):
            (workdir / stale).unlink()
    ansible = Ansible(workdir, Path(args.collections))
    ansible.env['BENCH_TIMING_KEEP'] = '1'
    src, dst = Host(INVENTORY, SRC), Host(INVENTORY, DST)
    started = time.monotonic()

    def phase(name: str, plays: list) -> list[dict]:
        t = time.monotonic()
        log('%s ...' % name)
        tasks = ansible.play(name.replace(' ', '-'), plays)
        results['phases'][name] = {'seconds': time.monotonic() - t, 'tasks': tasks}
        log('%s: %.0f s' % (name, time.monotonic() - t))
        return tasks

    phase('setup', setup_plays())
    t = time.monotonic()
    log('syncoid: installing Debian\'s sanoid package on %s ...' % SRC)
    results['debs'] = install_sanoid(src, Path(args.debs))
    results['syncoid_version'] = src.ssh('syncoid --version 2>&1 | head -n 1').strip()
    results['phases']['install sanoid'] = {'seconds': time.monotonic() - t}
    device = src.ssh("ip -o route get %s | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p'" % src.peers[0]['address']).strip()
    commands = Commands(Path(args.collections), src.peers[0], device)
    results['config'].update(device=device, hand_ssh=commands.ssh(['zfs', 'recv', '-s', '-u', '...']),
                             syncoid=commands.syncoid())

    # ZFS: the first fill and a full replica by each contender, then the rounds
    labels, orders, offsets = ['zfs full'], [list(CONTENDERS)], [None]
    tasks = zfs_round_tasks(commands, 'zfs full', 's0', None, list(CONTENDERS), None)
    order = list(CONTENDERS)
    for index in range(1, args.rounds + 1):
        label = 'zfs round %d' % index
        change = sorted(random.Random('zfs-%d' % index).sample(range(VOLUME_MIB), CHANGE_MIB))
        labels.append(label)
        orders.append(list(order))
        offsets.append(change)
        tasks += zfs_round_tasks(commands, label, 's%d' % index, 's%d' % (index - 1), order, change)
        order = order[1:] + order[:1]
    last = 's%d' % args.rounds
    tasks += zfs_digests(last)
    done = phase('zfs rounds', [play(SRC, tasks)])
    spans = python_spans(read_log(src, PYTHON_LOG))
    found = zfs_rounds(done, labels, orders, spans)
    for entry, change in zip(found, offsets):
        entry['offsets_mib'] = change
    named = dict((t['name'], t) for t in done)
    source = stdout_of(named['zfs digest source'])
    there = stdout_of(named['zfs digest targets'])
    if not source or there != source * len(CONTENDERS):
        raise BenchError('a ZFS replica of %s differs from the source: %s against %s' % (last, there, source))
    results['zfs'] = {'full': found[0], 'rounds': found[1:], 'digest': source[0], 'fits': zfs_fits(found[0], found[1:])}
    results['rows'] += zfs_rows(found[0], found[1:])

    # the large rounds: ours and the hand pipeline when the data outweighs a run's fixed cost
    if args.large_mib:
        tasks, labels = large_tasks(commands, args.large_rounds, args.large_mib)
        done = phase('large rounds', [play(SRC, tasks)])
        results['large'] = large_results(done, labels, python_spans(read_log(src, PYTHON_LOG)))
        results['rows'] += large_rows(results['zfs']['rounds'], results['large'])

    # LVM thin and qcow2: a full replica, then the incrementals
    results['blocks'] = {}
    for backend, case in (('lvm thin', 'T'), ('qcow2', 'Q')):
        tasks, changes = block_tasks(backend, args.rounds)
        done = phase(backend, [play(SRC, tasks, {'group/stratum.storage.storage': block_defaults(backend)})])
        spans = python_spans(read_log(src, PYTHON_LOG))
        results['blocks'][backend] = block_results(backend, done, changes, spans)
        results['rows'] += block_rows(backend, results['blocks'][backend], case)

    # the profile: one more ZFS round with every command timed
    label = 'zfs profile'
    index = args.rounds + 1
    change = sorted(random.Random('zfs-%d' % index).sample(range(VOLUME_MIB), CHANGE_MIB))
    src.ssh(timing_wrappers(PROFILED[SRC]))
    dst.ssh(timing_wrappers(PROFILED[DST]) + receiver_wrapper())
    try:
        done = phase('zfs profile', [play(SRC, profile_tasks(commands, label, 's%d' % index, last, change))])
    finally:
        src.ssh(unwrap(PROFILED[SRC], False), check=False)
        dst.ssh(unwrap(PROFILED[DST], True), check=False)
    results['profile'] = profile(read_log(src, COMMAND_LOG), read_log(dst, COMMAND_LOG), read_log(src, PYTHON_LOG),
                                 done, label)
    (workdir / 'syncoid.log').write_text(src.ssh('cat %s/syncoid.log' % RUN_DIR, check=False))
    results['seconds'] = time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--collections', required=True, help='where stratum.storage is installed')
    parser.add_argument('--out', required=True, help='the JSON file to write')
    parser.add_argument('--workdir', default=str(run.CHECKOUT / '.build' / 'bench-replica'))
    parser.add_argument('--debs', default=str(run.CHECKOUT / '.build' / 'bench-replica-debs'),
                        help='where the sanoid package and its missing dependencies are downloaded (kept)')
    parser.add_argument('--rounds', type=int, default=3, help='incrementals per contender and backend (medians)')
    parser.add_argument('--large-mib', type=int, default=LARGE_MIB,
                        help='MiB of the zvol rewritten whole by each large round (0: no large rounds)')
    parser.add_argument('--large-rounds', type=int, default=2, help='large incrementals of ours and the hand pipeline')
    parser.add_argument('--reuse', action='store_true', help='use the running test hosts (fresh ones); do not boot '
                        'or stop them')
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error('--rounds must be at least 1')
    if args.large_mib and (args.large_rounds < 1 or not 16 < args.large_mib <= 256):
        parser.error('--large-mib must be 0 or from 17 to 256 (the pool is on a 2 GiB disk), with '
                     '--large-rounds at least 1')
    started = time.monotonic()
    results: dict = {'rows': [], 'phases': {}, 'workdir': args.workdir,
                     'config': {'rounds': args.rounds, 'volume_mib': VOLUME_MIB, 'change_mib': CHANGE_MIB,
                                'full_mib': FULL_MIB, 'targets': TARGETS, 'large_mib': args.large_mib,
                                'large_rounds': args.large_rounds}}
    booted = False
    try:
        if not args.reuse:
            log('booting two test hosts')
            subprocess.run([sys.executable, str(TESTHOST), 'up', '--hosts', '2'], check=True)
            booted = True
        run_bench(args, results)
    except (BenchError, subprocess.CalledProcessError) as exc:
        print('bench: FAILED: %s' % exc, file=sys.stderr)
        return 1
    finally:
        if booted:
            subprocess.run([sys.executable, str(TESTHOST), 'down'], check=False)
    write_results(results, args.out, table(results), started)
    return 0


if __name__ == '__main__':
    sys.exit(main())
