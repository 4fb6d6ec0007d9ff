# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prints how long the ZFS and LVM backends take to turn one listing into records.

Run from the collection copy (``make bench``). The input is generated: 5,000 ZFS
snapshots over 5 zvols, and 1,000 LVs (400 volumes with COW snapshots). The
commands themselves are not run; this measures our parsing and record building,
which is what grows with the number of snapshots.
"""

from __future__ import annotations

import json
import time

from ansible_collections.stratum.storage.plugins.module_utils._lvm import LVS_FIELDS, LvmBackend
from ansible_collections.stratum.storage.plugins.module_utils._runner import CommandResult
from ansible_collections.stratum.storage.plugins.module_utils._zfs import COLUMNS, ZfsBackend

ROUNDS = 5


class OneAnswer:
    """A runner that answers every command with the same output and counts the calls."""

    def __init__(self, stdout):
        self.stdout = stdout
        self.calls = 0

    def run(self, argv, **kwargs):
        self.calls += 1
        return CommandResult(argv, 0, self.stdout, '')


def zfs_output(volumes=5, snapshots=5000):
    lines = []
    for index in range(volumes):
        values = dict.fromkeys(COLUMNS, '-')
        values.update(name='tank/v/vol%d' % index, type='volume', volsize='8388608', volblocksize='16384',
                      createtxg=str(index), creation='1795000000', guid=str(index))
        lines.append('\t'.join(values[c] for c in COLUMNS))
    for index in range(snapshots):
        values = dict.fromkeys(COLUMNS, '-')
        values.update(name='tank/v/vol%d@snap%05d' % (index % volumes, index), type='snapshot', volsize='8388608',
                      createtxg=str(volumes + index), creation='1795000000', guid=str(10 ** 6 + index),
                      defer_destroy='off', userrefs='0', clones='')
        lines.append('\t'.join(values[c] for c in COLUMNS))
    return '\n'.join(lines) + '\n'


def lvs_output(volumes=400, snapshots_each=2):
    rows = []
    for index in range(volumes):
        name = 'v%d' % index
        rows.append(dict(lv_name='volume-' + name, lv_size='67108864', lv_attr='owi-a-s---', segtype='linear',
                         lv_tags='stratum_volume=%s,stratum_created=20261122T010000.000000Z' % name,
                         vg_extent_size='4194304'))
        for snap in range(snapshots_each):
            rows.append(dict(lv_name='volume-%s.s%d' % (name, snap), lv_size='71303168', lv_attr='swi-a-s---',
                             segtype='linear', origin='volume-' + name, origin_size='67108864',
                             lv_tags='stratum_volume=%s,stratum_snapshot=s%d,stratum_created=20261122T0%d0000.000000Z'
                             % (name, snap, snap + 1), vg_extent_size='4194304'))
    for row in rows:
        for field in LVS_FIELDS:
            row.setdefault(field, '')
    return json.dumps({'report': [{'lv': rows}]})


def measure(label, backend, runner, expected):
    best = None
    for _round in range(ROUNDS):
        runner.calls = 0
        start = time.perf_counter()
        found = backend.list_snapshots()
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
        if len(found) != expected or runner.calls != 1:
            raise SystemExit('%s: expected %d snapshots from one command, got %d from %d'
                             % (label, expected, len(found), runner.calls))
    print('%-34s %6d snapshots  1 command  %7.1f ms (best of %d)' % (label, expected, best * 1000, ROUNDS))


def main():
    zfs_runner = OneAnswer(zfs_output())
    zfs = ZfsBackend(zfs_runner, {'parent': 'tank/v', 'properties': {}})
    zfs.connect(apply=False)
    measure('zfs list -H -p (5 zvols)', zfs, zfs_runner, 5000)
    lvm_runner = OneAnswer(lvs_output())
    lvm = LvmBackend(lvm_runner, {'vg': 'vg0'})
    lvm.connect(apply=False)
    measure('lvs --reportformat json (400 LVs)', lvm, lvm_runner, 800)


if __name__ == '__main__':
    main()
