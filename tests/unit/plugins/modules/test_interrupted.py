# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A run cut off half-way leaves a state the next run lists honestly and finishes."""

from __future__ import annotations

import os
from unittest import mock

import pytest

from ansible_collections.stratum.storage.plugins.module_utils import _nfs
from ansible_collections.stratum.storage.plugins.modules import snapshot, snapshot_info, volume
from ansible_collections.stratum.storage.tests.unit.helpers import (
    image_digest, nfs_args, qemu_write, read_info, run_module)


class Crash(Exception):
    """Stands for the process dying at that point."""


def crash_on_info_write(*args, **kwargs):
    raise Crash()


def build(voldir):
    assert run_module(volume, nfs_args(voldir, name='v', size='1M'))['changed']
    for i, name in enumerate(['s1', 's2', 's3'], start=1):
        active = read_info(str(voldir), 'v')['active'] if i > 1 else 'volume-v'
        qemu_write(os.path.join(str(voldir), active), 'raw' if i == 1 else 'qcow2', i, 0)
        assert run_module(snapshot, nfs_args(voldir, volume='v', name=name))['changed']
    qemu_write(os.path.join(str(voldir), 'volume-v.s3'), 'qcow2', 9, 0)


def digests(voldir, scratch):
    found = {}
    for snap in run_module(snapshot_info, nfs_args(voldir, volume='v'))['snapshots']:
        if snap['details']['image'] is None:  # a pending delete past the point of no return
            continue
        found[snap['name']] = image_digest(os.path.join(str(voldir), snap['details']['image']),
                                           snap['details']['image_format'], scratch)
    active = read_info(str(voldir), 'v')['active']
    found['live'] = image_digest(os.path.join(str(voldir), active), 'qcow2', scratch)
    return found


def crash_on_rebase(backend, *args, **kwargs):
    if args[0] == 'rebase':
        raise Crash()
    return REAL_QEMU_IMG(backend, *args, **kwargs)


REAL_QEMU_IMG = _nfs.NfsBackend._qemu_img
CUT_OFF = {
    # before the info file drops the snapshot: it is listed from the info file
    'before-info': ('_write_info', crash_on_info_write),
    # after the info file dropped it, before the overlay above is re-pointed: listed from our metadata
    'before-rebase': ('_qemu_img', crash_on_rebase),
}


@pytest.mark.parametrize('point', sorted(CUT_OFF))
@pytest.mark.parametrize('victim', ['s1', 's2'])
def test_interrupted_delete_lists_pending_and_is_finished_by_the_next_run(voldir, scratch, point, victim):
    build(voldir)
    before = digests(voldir, scratch)
    attribute, crash = CUT_OFF[point]
    with mock.patch.object(_nfs.NfsBackend, attribute, crash):
        try:
            run_module(snapshot, nfs_args(voldir, volume='v', name=victim, state='absent'))
        except Crash:
            pass
        else:
            raise AssertionError('the delete was expected to be cut off')
    # the data was already committed down, the info file still maps s2
    listed = dict((s['name'], s) for s in run_module(snapshot_info, nfs_args(voldir, volume='v'))['snapshots'])
    assert listed[victim]['status'] == 'pending_delete'
    assert all(s['status'] == 'available' for name, s in listed.items() if name != victim)
    again = run_module(snapshot, nfs_args(voldir, volume='v', name=victim))
    assert again['failed'] and 'being deleted' in again['msg']
    # every other point in time is already intact while the delete is pending
    pending = digests(voldir, scratch)
    assert dict((k, v) for k, v in pending.items() if k != victim) == \
        dict((k, v) for k, v in before.items() if k != victim)

    result = run_module(snapshot, nfs_args(voldir, volume='v', name=victim, state='absent'))
    assert result['changed'] and not result['failed'], result
    del before[victim]
    assert digests(voldir, scratch) == before
    assert not os.path.exists(os.path.join(str(voldir), 'volume-v.%s' % victim))
    assert [s['name'] for s in run_module(snapshot_info, nfs_args(voldir, volume='v'))['snapshots']] == \
        [name for name in ('s1', 's2', 's3') if name != victim]
    assert not run_module(snapshot, nfs_args(voldir, volume='v', name=victim, state='absent'))['changed']


def test_interrupted_create_is_retried_cleanly(voldir, scratch):
    build(voldir)
    before = digests(voldir, scratch)
    with mock.patch.object(_nfs.NfsBackend, '_write_info', crash_on_info_write):
        try:
            run_module(snapshot, nfs_args(voldir, volume='v', name='s4'))
        except Crash:
            pass
        else:
            raise AssertionError('the create was expected to be cut off')
    # the overlay was made but never published: the snapshot does not exist yet
    assert os.path.exists(os.path.join(str(voldir), 'volume-v.s4'))
    assert 's4' not in read_info(str(voldir), 'v')
    assert digests(voldir, scratch) == before
    result = run_module(snapshot, nfs_args(voldir, volume='v', name='s4'))
    assert result['changed'] and result['snapshot']['status'] == 'available', result
    assert read_info(str(voldir), 'v')['active'] == 'volume-v.s4'
    assert digests(voldir, scratch)['s4'] == before['live']
