# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every state change: check mode, real run, again (no change), again in check mode (no change).

Each step compares the files on disk, not only the returned values.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from ansible_collections.stratum.storage.plugins.modules import snapshot, volume
from ansible_collections.stratum.storage.tests.unit.helpers import nfs_args, run_module, sh, tree_state

READ_ONLY = {('qemu-img', 'info')}


def virtual_size(directory, filename):
    """Guest-visible size of an image as qemu-img reports it; None when the file is missing."""
    path = os.path.join(directory, filename)
    if not os.path.exists(path):
        return None
    return json.loads(sh('qemu-img', 'info', '-U', '--output=json', path))['virtual-size']


def image_format(directory, filename):
    path = os.path.join(directory, filename)
    if not os.path.exists(path):
        return None
    return json.loads(sh('qemu-img', 'info', '-U', '--output=json', path))['format']


def prepare(voldir, steps):
    for module, args in steps:
        result = run_module(module, nfs_args(voldir, **args))
        assert not result['failed'], result


def only_reads(commands):
    return all(tuple(c[:2]) in READ_ONLY for c in commands)


CASES = {
    'create-raw': ([], volume, dict(name='v', size='10M'),
                   lambda d: virtual_size(d, 'volume-v') == 10 << 20),
    'create-qcow2': ([], volume, dict(name='v', size=1000, format='qcow2'),
                     lambda d: image_format(d, 'volume-v') == 'qcow2' and virtual_size(d, 'volume-v') == 1024),
    'grow': ([(volume, dict(name='v', size='1M'))], volume, dict(name='v', size='3MiB'),
             lambda d: virtual_size(d, 'volume-v') == 3 << 20),
    'grow-with-snapshot': ([(volume, dict(name='v', size='1M')), (snapshot, dict(volume='v', name='s'))],
                           volume, dict(name='v', size='2M'),
                           lambda d: virtual_size(d, 'volume-v.s') == 2 << 20 and virtual_size(d, 'volume-v') == 1 << 20),
    'delete': ([(volume, dict(name='v', size='1M'))], volume, dict(name='v', state='absent'),
               lambda d: os.listdir(d) == []),
    'delete-force': ([(volume, dict(name='v', size='1M')), (snapshot, dict(volume='v', name='s1')),
                      (snapshot, dict(volume='v', name='s2'))], volume, dict(name='v', state='absent', force=True),
                     lambda d: os.listdir(d) == []),
    'clone': ([(volume, dict(name='v', size='1M')), (snapshot, dict(volume='v', name='s1'))],
              volume, dict(name='c', source_volume='v', source_snapshot='s1'),
              lambda d: virtual_size(d, 'volume-c') == 1 << 20),
    'snapshot-create': ([(volume, dict(name='v', size='1M'))], snapshot, dict(volume='v', name='s1'),
                        lambda d: os.path.exists(os.path.join(d, 'volume-v.s1'))),
    'snapshot-delete': ([(volume, dict(name='v', size='1M')), (snapshot, dict(volume='v', name='s1')),
                         (snapshot, dict(volume='v', name='s2'))], snapshot, dict(volume='v', name='s1', state='absent'),
                        lambda d: not os.path.exists(os.path.join(d, 'volume-v.s1'))),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_check_real_again_again_check(voldir, case):
    setup, module, args, on_disk = CASES[case]
    directory = str(voldir)
    prepare(voldir, setup)
    start = tree_state(directory)

    commands = []
    predicted = run_module(module, nfs_args(voldir, **args), check=True, commands=commands)
    assert predicted['changed'] and not predicted['failed'], predicted
    assert only_reads(commands), commands
    assert tree_state(directory) == start, 'check mode must not touch the directory'
    assert not on_disk(directory)

    real = run_module(module, nfs_args(voldir, **args))
    assert real['changed'] and not real['failed'], real
    assert real['actions'] == predicted['actions']
    assert on_disk(directory)
    key = 'volume' if module is volume else 'snapshot'
    if predicted[key] is None:
        assert real[key] is None
    else:
        # the prediction matches the real result wherever it knows the value
        for field in ('name', 'backend', 'status', 'size', 'origin', 'parent', 'volume'):
            if field in predicted[key]:
                assert predicted[key][field] == real[key][field], field
    assert real['diff']['before'] == predicted['diff']['before']
    after = tree_state(directory)

    commands = []
    again = run_module(module, nfs_args(voldir, **args), commands=commands)
    assert not again['changed'] and not again['failed'] and again['actions'] == [], again
    assert commands == [], 'an idempotent no-op runs no command on this backend'
    assert again[key] == real[key]
    assert tree_state(directory) == after

    again_check = run_module(module, nfs_args(voldir, **args), check=True)
    assert not again_check['changed'] and again_check[key] == real[key]
    assert tree_state(directory) == after


@pytest.mark.parametrize('module, args, message', [
    (volume, dict(name='a;b', size='1M'), 'Volume name'),
    (volume, dict(name='../x', size='1M'), 'Volume name'),
    (volume, dict(name='a b', size='1M'), 'Volume name'),
    (volume, dict(name='-x', size='1M'), 'Volume name'),
    (volume, dict(name='ok', size='1M', source_volume='a/b'), 'Source volume name'),
    (volume, dict(name='ok', size='ten'), 'size'),
    (volume, dict(name='ok', size=0), 'size'),
    (volume, dict(name='ok', size='-1G'), 'size'),
    (volume, dict(name='ok', size='5%'), 'size'),
    (volume, dict(name='ok'), 'no size was given'),
    (snapshot, dict(volume='ok', name='a@b'), 'Snapshot name'),
    (snapshot, dict(volume='ok', name='info'), 'reserved'),
    (snapshot, dict(volume='x;y', name='s'), 'Volume name'),
    (snapshot, dict(volume='missing', name='s'), 'does not exist'),
])
@pytest.mark.parametrize('check', [True, False])
def test_bad_input_one_sentence_nothing_created(voldir, module, args, message, check):
    commands = []
    result = run_module(module, nfs_args(voldir, **args), check=check, commands=commands)
    assert result['failed'] and message in result['msg'], result
    assert result['msg'].count('\n') == 0 and result['msg'].endswith('.')
    assert commands == [] and os.listdir(str(voldir)) == []


def test_shrink_and_format_change_are_refused(voldir):
    prepare(voldir, [(volume, dict(name='v', size='2M'))])
    before = tree_state(str(voldir))
    result = run_module(volume, nfs_args(voldir, name='v', size='1M'))
    assert result['failed'] and 'shrinking' in result['msg']
    result = run_module(volume, nfs_args(voldir, name='v', format='qcow2'))
    assert result['failed'] and 'format cannot be changed' in result['msg']
    assert tree_state(str(voldir)) == before
    # 2M expressed as bytes not on a 512-byte boundary rounds up to the same size
    result = run_module(volume, nfs_args(voldir, name='v', size=(2 << 20) - 100))
    assert not result['changed'] and not result['failed']


def test_delete_with_snapshots_needs_force(voldir):
    prepare(voldir, [(volume, dict(name='v', size='1M')), (snapshot, dict(volume='v', name='s1'))])
    before = tree_state(str(voldir))
    result = run_module(volume, nfs_args(voldir, name='v', state='absent'))
    assert result['failed'] and 'force=true' in result['msg'] and 's1' in result['msg']
    assert tree_state(str(voldir)) == before


def test_in_use_image_is_refused(voldir):
    prepare(voldir, [(volume, dict(name='v', size='1M')), (snapshot, dict(volume='v', name='s1'))])
    directory = str(voldir)
    holder = subprocess.Popen(['qemu-io', '-f', 'qcow2', os.path.join(directory, 'volume-v.s1')],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        assert holder.poll() is None
        before = tree_state(directory)
        for module, args in [(snapshot, dict(volume='v', name='s2')),
                             (snapshot, dict(volume='v', name='s1', state='absent')),
                             (volume, dict(name='v', size='2M')),
                             (volume, dict(name='v', state='absent', force=True))]:
            for check in (True, False):
                result = run_module(module, nfs_args(voldir, **args), check=check)
                assert result['failed'] and 'is in use' in result['msg'], result
                assert tree_state(directory) == before
    finally:
        holder.communicate(b'quit\n', timeout=10)
    result = run_module(snapshot, nfs_args(voldir, volume='v', name='s2'))
    assert result['changed'] and not result['failed']
