# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmarks on one test host against what users would use instead (make bench-hosts).

Boots one test host (tests/testhost/testhost.py), runs the cases P1 to P4 of
docs/testhosts.md, prints a table (our figure, the reference figure, their
ratio, the median of the runs and their spread) and writes it with every
measured task as JSON. It stops the host it booted on every exit. It prints
figures and asserts no time; it fails only when a task fails or a result is
not what the case needs (a no-op that changes, a listing with the wrong count).

Every contender runs the same way: pipelining and ControlPersist (the test-host
inventory), no facts, a loop inside one task per step, module_defaults for the
modules' shared options. Ours and the references run in the same playbook,
interleaved, so that load on this machine falls on both alike.

Backend commands are counted by wrappers placed ahead in PATH on the guest
(/usr/local/sbin, which PATH and get_bin_path both search before /usr/sbin):
each logs the task's BENCH_TAG and its argv, then execs the real binary. They
are removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent
TESTHOST = CHECKOUT / 'tests' / 'testhost' / 'testhost.py'
INVENTORY = CHECKOUT / '.testhost' / 'inventory.yml'
KEY = CHECKOUT / '.testhost' / 'id_ed25519'

HOST = 'testhost1'
VG, POOL, ZPOOL = 'benchvg', 'pool', 'benchpool'
ZPARENT, ZP2 = ZPOOL + '/v', ZPOOL + '/p2'
LOG = '/run/stratum-bench/commands.log'
#: commands counted on the guest; a command is a read when its argv starts with one of READS
WRAPPED = ('lvm', 'lvs', 'vgs', 'pvs', 'lvcreate', 'lvremove', 'lvchange', 'lvextend', 'lvreduce', 'lvrename',
           'vgchange', 'zfs', 'zpool', 'udevadm', 'dd', 'dmsetup')
READS = ('lvs', 'vgs', 'pvs', 'lvm version', 'zfs list', 'zfs get', 'zpool get', 'zpool list')
VOLUME_SIZE = '8M'  # P3
P1_SIZE = '64M'
P2_ZVOLS, P2_SNAPSHOTS_EACH = 50, 100  # 5,000 ZFS snapshots
P2_LV_VOLUMES, P2_LV_SNAPSHOTS_EACH = 100, 9  # 1,000 LVs: 100 thin volumes with 9 thin snapshots each
TARGETS = {'P1': 1.0, 'P2': 1.3, 'P3': 1.2}


class BenchError(Exception):
    pass


def log(message: str) -> None:
    print('bench: %s' % message, flush=True)


# -- the host ------------------------------------------------------------------------------

class Host:
    def __init__(self, inventory: Path, name: str = HOST) -> None:
        data = yaml.safe_load(inventory.read_text())
        host = data['all']['hosts'][name]
        self.name = name
        self.port = int(host['ansible_port'])
        self.disks = list(data['all']['vars']['testhost_disks'])
        self.peers = list(host.get('testhost_peers') or [])

    def ssh(self, command: str, stdin: bytes | None = None, check: bool = True) -> str:
        argv = ['ssh', '-q', '-i', str(KEY), '-p', str(self.port), '-o', 'BatchMode=yes',
                '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', 'root@127.0.0.1', command]
        done = subprocess.run(argv, input=stdin, capture_output=True, check=False)
        if check and done.returncode != 0:
            raise BenchError('on the guest, %r failed (exit %d): %s'
                             % (command[:200], done.returncode, done.stderr.decode(errors='replace')[-2000:]))
        return done.stdout.decode(errors='replace')

    def take_log(self) -> list[tuple[str, str]]:
        """The commands logged since the last call, as (tag, argv text); the log is emptied."""
        text = self.ssh('cat %s 2>/dev/null; : > %s' % (LOG, LOG))
        found = []
        for line in text.splitlines():
            tag, _sep, argv = line.partition('\t')
            found.append((tag, argv))
        return found


def wrapper_script() -> str:
    """Shell run on the guest: one counting wrapper per command, ahead of the real one in PATH."""
    lines = ['set -e', 'mkdir -p /run/stratum-bench', ': > %s' % LOG]
    for name in WRAPPED:
        lines += ['real=$(PATH=/usr/sbin:/usr/bin:/sbin:/bin command -v %s || true)' % name,
                  'if [ -n "$real" ]; then',
                  'cat > /usr/local/sbin/%s <<WRAP' % name,
                  '#!/bin/sh',
                  'printf \'%%s\\\\t%%s\\\\n\' "\\${BENCH_TAG:--}" "\\${0##*/} \\$*" >> %s' % LOG,
                  'exec $real "\\$@"',
                  'WRAP',
                  'chmod 755 /usr/local/sbin/%s && echo %s >> /run/stratum-bench/wrapped' % (name, name),
                  'fi']
    return '\n'.join(lines) + '\n'


def unwrap_script() -> str:
    return ('if [ -f /run/stratum-bench/wrapped ]; then for n in $(cat /run/stratum-bench/wrapped); do '
            'rm -f /usr/local/sbin/$n; done; fi; rm -rf /run/stratum-bench\n')


# -- ansible -------------------------------------------------------------------------------

class Ansible:
    def __init__(self, workdir: Path, collections: Path) -> None:
        self.workdir = workdir
        self.bin = Path(sys.executable).parent
        self.timing = workdir / 'tasks.jsonl'
        self.output = workdir / 'ansible.log'
        self.env = dict(os.environ,
                        ANSIBLE_COLLECTIONS_PATH=str(collections),
                        ANSIBLE_CALLBACK_PLUGINS=str(HERE / 'callback_plugins'),
                        ANSIBLE_CALLBACKS_ENABLED='bench_timing',
                        ANSIBLE_HOST_KEY_CHECKING='False',
                        ANSIBLE_RETRY_FILES_ENABLED='False',
                        ANSIBLE_DEPRECATION_WARNINGS='False',
                        ANSIBLE_NOCOLOR='1',
                        BENCH_TIMING_FILE=str(self.timing))

    def play(self, name: str, plays: list) -> list[dict]:
        """Run ``plays`` (written to a file as JSON, which is YAML); return the timing of each task."""
        path = self.workdir / ('%s.yml' % name)
        path.write_text(json.dumps(plays, indent=1))
        if self.timing.exists():
            self.timing.unlink()
        with open(self.output, 'a') as out:
            out.write('\n===== %s\n' % name)
            out.flush()
            done = subprocess.run([str(self.bin / 'ansible-playbook'), '-i', str(INVENTORY), str(path)],
                                  env=self.env, stdout=out, stderr=subprocess.STDOUT, check=False)
        tasks = [json.loads(line) for line in self.timing.read_text().splitlines()] if self.timing.exists() else []
        if done.returncode != 0:
            tail = ''.join(open(self.output, errors='replace').readlines()[-40:])
            raise BenchError('playbook %s failed (exit %d); the end of %s:\n%s'
                             % (name, done.returncode, self.output, tail))
        return tasks


def play(tasks: list, check_mode: bool = False, defaults: dict | None = None) -> dict:
    found = {'hosts': HOST, 'gather_facts': False, 'tasks': tasks}
    if defaults:
        found['module_defaults'] = defaults
    return found


def task(name: str, tag: str, module: str, args: dict, loop: list | None = None, check_mode: bool = False,
         expect_changed: bool | None = None) -> dict:
    found = {'name': name, 'environment': {'BENCH_TAG': tag}, module: args}
    if loop is not None:
        found['loop'] = loop
    if check_mode:
        found['check_mode'] = True
    if module.endswith('command'):
        found['changed_when'] = expect_changed is not False
    return found


def raw(name: str, command: str) -> dict:
    return {'name': name, 'ansible.builtin.raw': command, 'changed_when': False}


# -- the cases -----------------------------------------------------------------------------

OURS_LVM_THIN = {'backend': 'lvm', 'lvm': {'vg': VG, 'thin_pool': POOL}}
OURS_LVM_THICK = {'backend': 'lvm', 'lvm': {'vg': VG}}
OURS_ZFS = {'backend': 'zfs', 'zfs': {'parent': ZPARENT}}
P1_OBJECTS = [dict(OURS_LVM_THICK, name='p1thick'), dict(OURS_LVM_THIN, name='p1thin'), dict(OURS_ZFS, name='p1zvol')]
P1_BACKEND = {'backend': '{{ item.backend }}', 'lvm': '{{ item.lvm | default(omit) }}',
              'zfs': '{{ item.zfs | default(omit) }}'}


def setup_plays(host: Host) -> list:
    vdb, vdc = host.disks[0], host.disks[1]
    return [play([
        raw('load ZFS, make the volume group, its thin pool and the ZFS pool',
            'modprobe zfs && pvcreate -q --metadatasize 64m %s && vgcreate -q -s 4m %s %s && '
            'lvcreate -q --yes -L 1200m --poolmetadatasize 64m -T %s/%s && zpool create -f %s %s && '
            'zfs create %s && zfs create %s' % (vdb, VG, vdb, VG, POOL, ZPOOL, vdc, ZPARENT, ZP2)),
        raw('install the counting wrappers', wrapper_script()),
        task('P1 volumes', 'setup', 'stratum.storage.volume', dict(P1_BACKEND, name='{{ item.name }}', size=P1_SIZE),
             loop=P1_OBJECTS),
        task('P1 snapshots', 'setup', 'stratum.storage.snapshot', dict(P1_BACKEND, volume='{{ item.name }}', name='s1'),
             loop=P1_OBJECTS),
    ])]


def p1_pairs() -> list:
    """(label, ours module and args, reference label, reference module and args) of each P1 check."""
    return [
        ('lvm thick volume', 'stratum.storage.volume', dict(OURS_LVM_THICK, name='p1thick', size=P1_SIZE),
         'community.general.lvol', {'vg': VG, 'lv': 'volume-p1thick', 'size': '64m'}),
        ('lvm thick snapshot', 'stratum.storage.snapshot', dict(OURS_LVM_THICK, volume='p1thick', name='s1'),
         'community.general.lvol', {'vg': VG, 'lv': 'volume-p1thick', 'snapshot': 'volume-p1thick.s1'}),
        ('lvm thin volume', 'stratum.storage.volume', dict(OURS_LVM_THIN, name='p1thin', size=P1_SIZE),
         'community.general.lvol', {'vg': VG, 'lv': 'volume-p1thin', 'thinpool': POOL, 'size': '64m'}),
        ('lvm thin snapshot', 'stratum.storage.snapshot', dict(OURS_LVM_THIN, volume='p1thin', name='s1'),
         'community.general.lvol', {'vg': VG, 'lv': 'volume-p1thin', 'snapshot': 'volume-p1thin.s1'}),
        ('zfs volume', 'stratum.storage.volume', dict(OURS_ZFS, name='p1zvol', size=P1_SIZE),
         'community.general.zfs', {'name': ZPARENT + '/p1zvol', 'state': 'present',
                                   'extra_zfs_properties': {'volsize': '67108864'}}),
        ('zfs snapshot', 'stratum.storage.snapshot', dict(OURS_ZFS, volume='p1zvol', name='s1'),
         'community.general.zfs', {'name': ZPARENT + '/p1zvol@s1', 'state': 'present'}),
    ]


def p1_plays(rounds: int) -> list:
    tasks = []
    for run in range(rounds):
        for label, ours, args, ref, ref_args in p1_pairs():
            # a reference that fails is reported, not fatal (lvol cannot check a thick LV's snapshot)
            pair = [task('P1 %s ours %d' % (label, run), 'P1/%s/ours' % label, ours, args),
                    dict(task('P1 %s ref %d' % (label, run), 'P1/%s/ref' % label, ref, ref_args), ignore_errors=True)]
            tasks += pair if run % 2 == 0 else pair[::-1]
    return [play(tasks)]


def p2_setup_plays(backends: list[str]) -> list:
    zvols = ' '.join('%s/z%02d' % (ZP2, i) for i in range(P2_ZVOLS))
    lvm = [
        raw('1,000 LVs: %d thin volumes with %d thin snapshots each, in one metadata write'
            % (P2_LV_VOLUMES, P2_LV_SNAPSHOTS_EACH),
            'vgchange -q -an %s >/dev/null && vgcfgbackup -q -f /run/stratum-bench/vg.txt %s >/dev/null && '
            'python3 - /run/stratum-bench/vg.txt /run/stratum-bench/vg-filled.txt %s %d %d '
            '< /run/stratum-bench/lvm_fill.py && vgcfgrestore -q --force -f /run/stratum-bench/vg-filled.txt %s'
            % (VG, VG, POOL, P2_LV_VOLUMES, P2_LV_SNAPSHOTS_EACH, VG))]
    zfs = [
        raw('%d zvols' % P2_ZVOLS, 'for z in %s; do zfs create -s -V 8M -o volblocksize=16K $z; done' % zvols),
        raw('%d snapshots of each zvol, one zfs snapshot command (one transaction) per round' % P2_SNAPSHOTS_EACH,
            'for s in $(seq -w 1 %d); do zfs snapshot $(for z in %s; do printf "%%s@s%%s " $z $s; done); done'
            % (P2_SNAPSHOTS_EACH, zvols))]
    return [play((lvm if 'lvm' in backends else []) + (zfs if 'zfs' in backends else []))]


def p2_pairs(backends: list[str]) -> list:
    pairs = [
        ('1,000 LVs', 'stratum.storage.snapshot_info', {'backend': 'lvm', 'lvm': {'vg': VG}},
         'ansible.builtin.command', {'argv': ['lvs', '--reportformat', 'json', VG]}),
        ('5,000 ZFS snapshots', 'stratum.storage.snapshot_info', {'backend': 'zfs', 'zfs': {'parent': ZP2}},
         'ansible.builtin.command', {'argv': ['zfs', 'list', '-H', '-p', '-t', 'snapshot', '-r', ZP2]}),
    ]
    return [pair for pair in pairs if pair[2]['backend'] in backends]


def p2_plays(rounds: int, backends: list[str]) -> list:
    tasks = []
    for run in range(rounds):
        for label, ours, args, ref, ref_args in p2_pairs(backends):
            pair = [task('P2 %s ours %d' % (label, run), 'P2/%s/ours' % label, ours, args),
                    task('P2 %s ref %d' % (label, run), 'P2/%s/ref' % label, ref, ref_args, expect_changed=False)]
            tasks += pair if run % 2 == 0 else pair[::-1]
    return [play(tasks)]


CONTENDERS = ('ours', 'cli', 'community')


def p3_steps(backend: str, contender: str, prefix: str) -> list[tuple[str, str, dict, bool]]:
    """(step, module, args, check mode allowed) of the create / snapshot / delete play, one volume per item."""
    vol = prefix + '{{ item }}'
    if contender == 'ours':
        return [('create', 'stratum.storage.volume', {'name': vol, 'size': VOLUME_SIZE}, True),
                ('snapshot', 'stratum.storage.snapshot', {'volume': vol, 'name': 's1'}, True),
                ('delete', 'stratum.storage.volume', {'name': vol, 'state': 'absent', 'force': True}, True)]
    if backend == 'lvm' and contender == 'cli':
        # the same LVM commands as ours: a thin LV, an activated thin snapshot, one lvremove of both
        return [('create', 'ansible.builtin.command',
                 {'argv': ['lvcreate', '--yes', '-V', VOLUME_SIZE, '-T', '%s/%s' % (VG, POOL), '-n', vol]}, False),
                ('snapshot', 'ansible.builtin.command',
                 {'argv': ['lvcreate', '--yes', '-s', '-kn', '-n', vol + '.s1', '%s/%s' % (VG, vol)]}, False),
                ('delete', 'ansible.builtin.command',
                 {'argv': ['lvremove', '--yes', '%s/%s.s1' % (VG, vol), '%s/%s' % (VG, vol)]}, False)]
    if backend == 'lvm':
        # lvol removes one LV a task, so the play deletes the snapshot and then the volume
        return [('create', 'community.general.lvol', {'lv': vol, 'thinpool': POOL, 'size': VOLUME_SIZE.lower()}, True),
                ('snapshot', 'community.general.lvol', {'lv': vol, 'snapshot': vol + '.s1'}, True),
                ('delete snapshot', 'community.general.lvol', {'lv': vol + '.s1', 'state': 'absent', 'force': True},
                 True),
                ('delete', 'community.general.lvol', {'lv': vol, 'state': 'absent', 'force': True}, True)]
    if contender == 'cli':
        return [('create', 'ansible.builtin.command',
                 {'argv': ['zfs', 'create', '-V', VOLUME_SIZE, '-o', 'volblocksize=16K', '%s/%s' % (ZPARENT, vol)]},
                 False),
                ('snapshot', 'ansible.builtin.command', {'argv': ['zfs', 'snapshot', '%s/%s@s1' % (ZPARENT, vol)]},
                 False),
                ('delete', 'ansible.builtin.command', {'argv': ['zfs', 'destroy', '-r', '%s/%s' % (ZPARENT, vol)]},
                 False)]
    return [('create', 'community.general.zfs',
             {'name': '%s/%s' % (ZPARENT, vol), 'state': 'present',
              'extra_zfs_properties': {'volsize': VOLUME_SIZE, 'volblocksize': '16K'}}, True),
            ('snapshot', 'community.general.zfs', {'name': '%s/%s@s1' % (ZPARENT, vol), 'state': 'present'}, True),
            ('delete', 'community.general.zfs', {'name': '%s/%s' % (ZPARENT, vol), 'state': 'absent'}, True)]


def p3_defaults(backend: str) -> dict:
    if backend == 'lvm':
        return {'group/stratum.storage.storage': OURS_LVM_THIN,
                'community.general.lvol': {'vg': VG}}
    return {'group/stratum.storage.storage': OURS_ZFS}


def p3_play(backend: str, contender: str, size: int, check: bool) -> dict:
    """The play for one contender: each step a loop over ``size`` volumes.

    With ``check``, each step of ours runs first in check mode, in the state its real
    run then meets (P4).
    """
    prefix = 'b%s%d-' % (contender[:2], size)
    items = list(range(size))
    tasks = []
    for step, module, args, _check in p3_steps(backend, contender, prefix):
        base = 'P3/%s/%s/%s/%d' % (backend, contender, step, size)
        if check:
            tasks.append(task('P4 ' + base, 'P4/%s/%s' % (backend, step), module, args, items, check_mode=True))
        tasks.append(task('P3 ' + base, 'P3/%s/%s/%s' % (backend, contender, step), module, args, items))
    return play(tasks, defaults=p3_defaults(backend))


# -- figures -------------------------------------------------------------------------------

def spread(values: list[float]) -> dict:
    values = sorted(values)
    return {'median': statistics.median(values), 'min': values[0], 'max': values[-1], 'n': len(values)}


def fit(points: list[tuple[int, float]]) -> dict:
    """Least squares ``seconds = fixed + per_volume * volumes``, with the largest residual."""
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    slope = sum((p[0] - mx) * (p[1] - my) for p in points) / sxx if sxx else 0.0
    fixed = my - slope * mx
    residual = max(abs(p[1] - (fixed + slope * p[0])) / p[1] for p in points) if points else 0.0
    return {'per_volume': slope, 'fixed': fixed, 'max_residual': residual,
            'points': [{'volumes': p[0], 'seconds': p[1]} for p in points]}


def count(commands: list[tuple[str, str]], tag: str) -> dict:
    mine = [argv for t, argv in commands if t == tag]
    reads = [argv for argv in mine if argv.startswith(READS)]
    return {'commands': len(mine), 'reads': len(reads), 'writes': len(mine) - len(reads),
            'argv': sorted(set(' '.join(a.split()[:2]) for a in mine))}


def by_name(tasks: list[dict]) -> dict:
    return dict((t['name'], t) for t in tasks)


def fmt(seconds: float) -> str:
    return '%.2f' % seconds


def fmt_spread(s: dict) -> str:
    return '%s s (%s-%s, n=%d)' % (fmt(s['median']), fmt(s['min']), fmt(s['max']), s['n'])


def fmt_commands(c: dict, per: int = 1) -> str:
    if per != 1:
        return '%.1f (%.1f reads)' % (c['commands'] / per, c['reads'] / per)
    return '%d (%d reads)' % (c['commands'], c['reads'])


# -- the run -------------------------------------------------------------------------------

def run(args) -> dict:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in ('ansible.log', 'tasks.jsonl'):
        with contextlib.suppress(FileNotFoundError):
            (workdir / stale).unlink()
    ansible = Ansible(workdir, Path(args.collections))
    host = Host(INVENTORY)
    results: dict = {'rows': [], 'config': {'rounds': args.rounds, 'p2_rounds': args.p2_rounds, 'sizes': args.sizes,
                                            'cases': sorted(args.cases), 'backends': args.backends,
                                            'contenders': args.contenders},
                     'phases': {}}
    started = time.monotonic()

    def phase(name: str, plays: list) -> tuple[list[dict], list[tuple[str, str]]]:
        t = time.monotonic()
        log('%s ...' % name)
        tasks = ansible.play(name, plays)
        commands = host.take_log()
        results['phases'][name] = {'seconds': time.monotonic() - t, 'tasks': tasks}
        log('%s: %.0f s' % (name, time.monotonic() - t))
        return tasks, commands

    host.ssh('mkdir -p /run/stratum-bench && cat > /run/stratum-bench/lvm_fill.py',
             stdin=(HERE / 'lvm_fill.py').read_bytes())
    phase('setup', setup_plays(host))
    overhead = host.ssh('s=$(date +%s%N); for i in $(seq 100); do BENCH_TAG=overhead lvs --version >/dev/null; done; '
                        'm=$(date +%s%N); for i in $(seq 100); do /usr/sbin/lvs --version >/dev/null; done; '
                        'e=$(date +%s%N); echo $(( (m - s - (e - m)) / 100000 ))')  # microseconds a call
    host.take_log()
    results['wrapper_overhead_ms'] = int(overhead.strip() or 0) / 1000.0

    # P1: no-op checks, interleaved ours / reference
    tasks, commands = phase('P1', p1_plays(args.rounds)) if 'P1' in args.cases else ([], [])
    named = by_name(tasks)
    for label, _ours, _a, ref, _r in (p1_pairs() if 'P1' in args.cases else []):
        ours_t = [named['P1 %s ours %d' % (label, r)] for r in range(args.rounds)]
        ref_t = [named['P1 %s ref %d' % (label, r)] for r in range(args.rounds)]
        changed = [t['name'] for t in ours_t + ref_t if t['changed']]
        ref_failed = sorted(set(t['summary'].get('msg', 'failed') for t in ref_t if t['failed']))
        if any(t['failed'] for t in ours_t):
            raise BenchError('P1 %s: our task failed' % label)
        ours_s, ref_s = spread([t['seconds'] for t in ours_t]), spread([t['seconds'] for t in ref_t])
        oc, rc = count(commands, 'P1/%s/ours' % label), count(commands, 'P1/%s/ref' % label)
        oc_run = dict(oc, commands=oc['commands'] / args.rounds, reads=oc['reads'] / args.rounds,
                      writes=oc['writes'] / args.rounds)
        ratio = ours_s['median'] / ref_s['median']
        results['rows'].append({
            'case': 'P1', 'what': 'no-op, %s' % label, 'ours': ours_s, 'reference': ref, 'ref': ref_s,
            'ratio': ratio, 'target': '<= 1.0x, <= 2 reads', 'ours_commands': oc_run,
            'ref_commands': dict(rc, commands=rc['commands'] / args.rounds, reads=rc['reads'] / args.rounds),
            'met': ratio <= TARGETS['P1'] and oc_run['commands'] <= 2 and oc_run['writes'] == 0 and not changed,
            'changed': changed, 'ref_failed': ref_failed})

    # P3 and P4: sizes outer, then backends, contenders in a rotating order
    p3: dict = {}
    p4: dict = {}
    order = list(args.contenders)
    for size in (args.sizes if 'P3' in args.cases else []):
        for backend in args.backends:
            plays = []
            for contender in order:
                plays.append(p3_play(backend, contender, size,
                                     check=(contender == 'ours' and size == max(args.sizes) and 'P4' in args.cases)))
            order = order[1:] + order[:1]
            tasks, commands = phase('P3 %s %d volumes' % (backend, size), plays)
            for t in tasks:
                kind, rest = t['name'].split(' ', 1)
                _p, _b, contender, step, _n = rest.split('/')
                if kind == 'P3':
                    entry = p3.setdefault((backend, contender), {}).setdefault(size, {'seconds': 0.0, 'items': []})
                    entry['seconds'] += t['seconds']
                    entry['items'] += [i['seconds'] for i in t['items']]
                    entry.setdefault('steps', {})[step] = t['seconds']
                    tag = 'P3/%s/%s/%s' % (backend, contender, step)
                    entry.setdefault('commands', {})[step] = count(commands, tag)
                else:
                    p4.setdefault(backend, {})[step] = {'seconds': t['seconds'], 'volumes': size,
                                                        'changed': sum(1 for i in t['items'] if i['changed']),
                                                        'commands': count(commands, 'P4/%s/%s' % (backend, step))}
    results['p3'] = dict(('%s/%s' % key, value) for key, value in p3.items())
    for backend in (args.backends if 'P3' in args.cases else ()):
        fits = {}
        for contender in args.contenders:
            sizes = sorted(p3[(backend, contender)])
            fits[contender] = fit([(n, p3[(backend, contender)][n]['seconds']) for n in sizes])
            fits[contender]['op'] = spread([s for n in sizes for s in p3[(backend, contender)][n]['items']])
            biggest = p3[(backend, contender)][sizes[-1]]
            total = sum(c['commands'] for c in biggest['commands'].values())
            reads = sum(c['reads'] for c in biggest['commands'].values())
            fits[contender]['commands_per_volume'] = {'commands': total / sizes[-1], 'reads': reads / sizes[-1]}
        for ref in [c for c in args.contenders if c != 'ours']:
            ratio = fits['ours']['per_volume'] / fits[ref]['per_volume']
            biggest = max(args.sizes)
            at_biggest = p3[(backend, 'ours')][biggest]['seconds'] / p3[(backend, ref)][biggest]['seconds']
            results['rows'].append({
                'case': 'P3', 'what': 'create, snapshot, delete (%s), per volume' % backend, 'ours': fits['ours'],
                'reference': '%s (%s)' % ({'cli': 'command + CLI', 'community': 'community.general'}[ref], backend),
                'ref': fits[ref], 'ratio': ratio, 'ratio_largest_play': at_biggest,
                'target': '<= 1.2x the CLI play' if ref == 'cli' else '-',
                'met': ratio <= TARGETS['P3'] if ref == 'cli' else None})
        steps = p4.get(backend, {})
        if steps:
            size = max(args.sizes)
            seconds = sum(s['seconds'] for s in steps.values())
            real = sum(p3[(backend, 'ours')][size]['steps'].values())
            cmds = sum(s['commands']['commands'] for s in steps.values())
            reads = sum(s['commands']['reads'] for s in steps.values())
            results['rows'].append({
                'case': 'P4', 'what': 'the P3 play in check mode (%s, %d volumes)' % (backend, size),
                'ours': {'seconds': seconds, 'commands': cmds, 'reads': reads, 'steps': steps},
                'reference': 'the same play, real run', 'ref': {'seconds': real}, 'ratio': seconds / real,
                'target': 'reads only', 'met': cmds == reads})

    # P2: listings (last: the 1,000 LVs leave the volume group's thin devices inactive)
    if 'P2' not in args.cases:
        return results
    phase('P2 setup', p2_setup_plays(args.backends))
    tasks, commands = phase('P2', p2_plays(args.p2_rounds, args.backends))
    named = by_name(tasks)
    # the volume group also holds P1's two volumes and their snapshots
    expected_records = {'1,000 LVs': P2_LV_VOLUMES * P2_LV_SNAPSHOTS_EACH + 2,
                        '5,000 ZFS snapshots': P2_ZVOLS * P2_SNAPSHOTS_EACH}
    for label, _ours, _a, _ref, _r in p2_pairs(args.backends):
        expected = expected_records[label]
        ours_t = [named['P2 %s ours %d' % (label, r)] for r in range(args.p2_rounds)]
        ref_t = [named['P2 %s ref %d' % (label, r)] for r in range(args.p2_rounds)]
        records = set(t['summary'].get('records') for t in ours_t)
        ours_s, ref_s = spread([t['seconds'] for t in ours_t]), spread([t['seconds'] for t in ref_t])
        oc = count(commands, 'P2/%s/ours' % label)
        ratio = ours_s['median'] / ref_s['median']
        results['rows'].append({
            'case': 'P2', 'what': 'snapshot_info over %s (%s snapshots listed)' % (label, '/'.join(map(str, records))),
            'ours': ours_s, 'reference': 'command: %s' % ' '.join(p2_ref_argv(label)), 'ref': ref_s, 'ratio': ratio,
            'target': '<= 1.3x',
            'ours_commands': dict(oc, commands=oc['commands'] / args.p2_rounds, reads=oc['reads'] / args.p2_rounds),
            'stdout_bytes': ref_t[0]['summary'].get('stdout_bytes'),
            'met': ratio <= TARGETS['P2'] and records == {expected}})
    results['seconds'] = time.monotonic() - started
    return results


def p2_ref_argv(label: str) -> list[str]:
    if 'LV' in label:
        return ['lvs', '--reportformat', 'json', VG]
    return ['zfs', 'list', '-H', '-p', '-t', 'snapshot', '-r', ZP2]


def write_results(results: dict, out: str, text: str, started: float) -> None:
    """Record the run's wall time, write the figures as JSON to ``out`` and print the table ``text``."""
    results['wall_seconds'] = time.monotonic() - started
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=1, default=str))
    print()
    print(text)
    print()
    log('figures written to %s; whole run %.0f s (%dm%02ds)'
        % (out, results['wall_seconds'], results['wall_seconds'] // 60, results['wall_seconds'] % 60))


def table(results: dict) -> str:
    row_format = '%-4s %-52s %-28s %-34s %-28s %6s  %-22s %s'
    lines = [row_format % ('case', 'what', 'ours', 'reference', 'reference figure', 'ratio', 'target', 'met')]
    for row in results['rows']:
        if row['case'] in ('P1', 'P2'):
            ours, ref = fmt_spread(row['ours']), fmt_spread(row['ref'])
        elif row['case'] == 'P3':
            ours = '%s s/vol, op %s s' % (fmt(row['ours']['per_volume']), fmt(row['ours']['op']['median']))
            ref = '%s s/vol, op %s s' % (fmt(row['ref']['per_volume']), fmt(row['ref']['op']['median']))
        else:
            ours, ref = '%s s' % fmt(row['ours']['seconds']), '%s s' % fmt(row['ref']['seconds'])
        met = {True: 'yes', False: 'NO', None: '-'}[row['met']]
        lines.append(row_format % (row['case'], row['what'][:52], ours, row['reference'][:34], ref,
                                   '%5.2fx' % row['ratio'], row['target'], met))
    lines += ['', 'Backend commands per run (wrappers ahead in PATH on the guest; %.1f ms each):'
              % results.get('wrapper_overhead_ms', 0)]
    for row in results['rows']:
        if row['case'] in ('P1', 'P2'):
            extra = ''
            if 'ref_commands' in row:
                extra = '; %s: %s %s' % (row['reference'], fmt_commands(row['ref_commands']),
                                         ', '.join(row['ref_commands']['argv']))
            for msg in row.get('ref_failed', []):
                extra += ' - the reference FAILED: %s' % msg
            for name in row.get('changed', []):
                extra += ' - CHANGED: %s' % name
            ours = '%s %s' % (fmt_commands(row['ours_commands']), ', '.join(row['ours_commands']['argv']))
            lines.append('  %s %-44s ours: %s%s' % (row['case'], row['what'][:44], ours, extra))
        elif row['case'] == 'P3' and row['target'] != '-':
            for key in ('ours', 'ref'):
                c = row[key]['commands_per_volume']
                pts = ', '.join('%d: %.1f s' % (p['volumes'], p['seconds']) for p in row[key]['points'])
                lines.append('  P3 %-44s %s: %.1f commands/volume (%.1f reads); play %s; fixed %.1f s; largest '
                             'residual %.0f%%; one operation %s' % (
                                 row['what'][:44], 'ours' if key == 'ours' else 'CLI', c['commands'], c['reads'], pts,
                                 row[key]['fixed'], 100 * row[key]['max_residual'], fmt_spread(row[key]['op'])))
            lines.append('  P3 %-44s ours / CLI: %.2fx per volume (slopes), %.2fx for the largest play' % (
                row['what'][:44], row['ratio'], row['ratio_largest_play']))
        elif row['case'] == 'P3':
            c = row['ref']['commands_per_volume']
            pts = ', '.join('%d: %.1f s' % (p['volumes'], p['seconds']) for p in row['ref']['points'])
            lines.append('  P3 %-44s community.general: %.1f commands/volume (%.1f reads); play %s; one operation %s; '
                         'ours / it: %.2fx for the largest play' % (row['what'][:44], c['commands'], c['reads'], pts,
                                                                    fmt_spread(row['ref']['op']),
                                                                    row['ratio_largest_play']))
        elif row['case'] == 'P4':
            for step, s in row['ours']['steps'].items():
                c = s['commands']
                lines.append('  P4 %-12s %-31s %d commands for %d volumes (%d reads, %d writes: %s); %d predicted '
                             'changes; %s s' % (row['what'].split('(')[1].split(',')[0], step, c['commands'],
                                                s['volumes'], c['reads'], c['writes'], ', '.join(c['argv']),
                                                s['changed'], fmt(s['seconds'])))
    return '\n'.join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--collections', required=True, help='where stratum.storage is installed')
    parser.add_argument('--out', required=True, help='the JSON file to write')
    parser.add_argument('--workdir', default=str(CHECKOUT / '.build' / 'bench-hosts'))
    parser.add_argument('--rounds', type=int, default=5, help='runs of each P1 task (median and spread)')
    parser.add_argument('--p2-rounds', type=int, default=3,
                        help='runs of each P2 task (listing 5,000 ZFS snapshots takes about 50 s under emulation)')
    parser.add_argument('--sizes', default='2,4,8', help='volumes per P3 play; P4 uses the largest')
    parser.add_argument('--cases', default='P1,P2,P3,P4',
                        help='the cases to run, of P1, P2, P3 and P4 (P4, the check mode of P3, with P3 only)')
    parser.add_argument('--backends', default='lvm,zfs', help='the backends P2 and P3 run on, of lvm and zfs')
    parser.add_argument('--contenders', default=','.join(CONTENDERS),
                        help='the P3 plays: ours and cli always, community (community.general) unless left out')
    parser.add_argument('--reuse', action='store_true', help='use the running test host; do not boot or stop it')
    args = parser.parse_args()
    args.sizes = sorted(int(s) for s in args.sizes.split(','))
    args.cases = set(c.strip().upper() for c in args.cases.split(',') if c.strip())
    if not args.cases or args.cases - {'P1', 'P2', 'P3', 'P4'}:
        parser.error('--cases takes P1, P2, P3 and P4, separated by commas')
    if 'P4' in args.cases and 'P3' not in args.cases:
        parser.error('--cases: P4 runs inside the P3 play of ours, so it needs P3 too')
    asked = set(x.strip() for x in args.backends.split(',') if x.strip())
    args.backends = [b for b in ('lvm', 'zfs') if b in asked]
    if not asked or asked - {'lvm', 'zfs'}:
        parser.error('--backends takes lvm and zfs, separated by commas')
    wanted = set(c.strip() for c in args.contenders.split(',') if c.strip())
    if wanted - set(CONTENDERS) or not {'ours', 'cli'} <= wanted:
        parser.error('--contenders takes ours, cli and community, separated by commas; ours and cli are needed')
    args.contenders = [c for c in CONTENDERS if c in wanted]
    if len(args.sizes) < 2:
        parser.error('--sizes needs at least two sizes for the linear fit')
    started = time.monotonic()
    booted = False
    host = None
    try:
        if not args.reuse:
            log('booting one test host')
            subprocess.run([sys.executable, str(TESTHOST), 'up', '--hosts', '1'], check=True)
            booted = True
        host = Host(INVENTORY)
        results = run(args)
        host.ssh(unwrap_script())
    except (BenchError, subprocess.CalledProcessError) as exc:
        print('bench: FAILED: %s' % exc, file=sys.stderr)
        return 1
    finally:
        if host is not None and not booted:
            with contextlib.suppress(BenchError):
                host.ssh(unwrap_script(), check=False)
        if booted:
            subprocess.run([sys.executable, str(TESTHOST), 'down'], check=False)
    write_results(results, args.out, table(results), started)
    return 0


if __name__ == '__main__':
    sys.exit(main())
