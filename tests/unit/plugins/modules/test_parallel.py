# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Concurrent snapshot creations on one volume serialize on the per-volume lock."""

from __future__ import annotations

import json
import multiprocessing
import os

from ansible_collections.stratum.storage.plugins.modules import snapshot, snapshot_info, volume
from ansible_collections.stratum.storage.tests.unit.helpers import nfs_args, read_info, run_module, sh

COUNT = 8


def _take(args):
    directory, name = args
    result = run_module(snapshot, nfs_args(directory, volume='v', name=name))
    return result['changed'], result['failed'], result.get('msg')


def test_eight_parallel_snapshot_creations_leave_a_valid_chain(voldir):
    directory = str(voldir)
    assert run_module(volume, nfs_args(voldir, name='v', size='1M'))['changed']
    names = ['p%d' % i for i in range(COUNT)]
    context = multiprocessing.get_context('fork')
    barrier_free = [(directory, name) for name in names]
    with context.Pool(COUNT) as pool:
        results = pool.map(_take, barrier_free)
    assert results == [(True, False, None)] * COUNT

    info = read_info(directory, 'v')
    assert sorted(k for k in info if k != 'active') == sorted(names)
    snaps = run_module(snapshot_info, nfs_args(voldir, volume='v'))['snapshots']
    assert sorted(s['name'] for s in snaps) == sorted(names)
    # one linear chain: each snapshot's parent is the one before it, the newest is active
    assert [s['parent'] for s in snaps] == [None] + [s['name'] for s in snaps[:-1]]
    assert info['active'] == snaps[-1]['details']['file']
    chain = json.loads(sh('qemu-img', 'info', '-U', '--backing-chain', '--output=json', info['active'], cwd=directory))
    assert len(chain) == COUNT + 1
    assert [os.path.basename(c['filename']) for c in chain][-1] == 'volume-v'
    for snap in snaps:
        sh('qemu-img', 'check', '-q', '-f', 'qcow2', snap['details']['file'], cwd=directory)
    leftovers = [f for f in os.listdir(directory) if f.endswith('.tmp') or f.endswith('.new')]
    assert leftovers == []
