# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a hostile tenant, a full disk or a careless playbook does to an nfs directory.

Anyone who can write into the directory (a tenant's files, a guest's disk
content, a script) must not make a module write outside it, leak a host file
into a volume or corrupt guest data; every failure is one sentence. Each case
uses the real qemu-img and qemu-io.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys
import threading
import time
from unittest import mock

import pytest

from ansible_collections.stratum.storage.plugins.module_utils import _files, _nfs
from ansible_collections.stratum.storage.plugins.module_utils._errors import CommandError, InvalidInputError
from ansible_collections.stratum.storage.plugins.module_utils._names import validate_name
from ansible_collections.stratum.storage.plugins.modules import snapshot, snapshot_info, volume, volume_info
from ansible_collections.stratum.storage.tests.unit.helpers import (
    image_digest, nfs_args, qemu_write, read_info, run_module, sh, tree_state)

OUTSIDE_CONTENT = b'host file that must never change\n' * 64


class Crash(Exception):
    """Stands for the process dying at that point."""


def ok(result):
    assert not result['failed'], result
    return result


def one_sentence(result, *words):
    assert result['failed'], result
    msg = result['msg']
    assert '\n' not in msg and msg.endswith('.') and 'Traceback' not in msg, msg
    for word in words:
        assert word in msg, msg
    return msg


def outside_file(tmp_path, name='outside.img'):
    path = tmp_path / name
    path.write_bytes(OUTSIDE_CONTENT)
    return str(path)


def path(voldir, name):
    return os.path.join(str(voldir), name)


def write_meta(voldir, volume_name, meta):
    with open(path(voldir, 'volume-%s.stratum.json' % volume_name), 'w') as handle:
        json.dump(meta, handle)


def read_meta(voldir, volume_name):
    with open(path(voldir, 'volume-%s.stratum.json' % volume_name)) as handle:
        return json.load(handle)


def listed(voldir, name):
    volumes = ok(run_module(volume_info, nfs_args(voldir)))['volumes']
    return dict((v['name'], v) for v in volumes).get(name)


def snapshots_of(voldir, name):
    return ok(run_module(snapshot_info, nfs_args(voldir, volume=name)))['snapshots']


def build(voldir, snaps=('s1', 's2')):
    ok(run_module(volume, nfs_args(voldir, name='v', size='1M')))
    for i, name in enumerate(snaps, start=1):
        active = read_info(str(voldir), 'v')['active'] if i > 1 else 'volume-v'
        qemu_write(path(voldir, active), 'raw' if i == 1 else 'qcow2', i, 0)
        ok(run_module(snapshot, nfs_args(voldir, volume='v', name=name)))


def strip_backing_format(filename):
    """Turn an overlay's backing-format extension into an unknown one, as older Cinder or qemu wrote it."""
    with open(filename, 'r+b') as handle:
        head = bytearray(handle.read(65536))
        at = head.find(struct.pack('>I', 0xe2792aca))
        assert at > 0
        handle.seek(at)
        handle.write(struct.pack('>I', 0x5354524d))


# -- 1. planted symlinks ---------------------------------------------------------------------

@pytest.mark.parametrize('args', [dict(name='new', size='1M'), dict(name='new', source_volume='v')],
                         ids=['create', 'clone'])
def test_planted_symlink_as_new_file_is_never_followed(voldir, tmp_path, args):
    ok(run_module(volume, nfs_args(voldir, name='v', size='1M')))
    target = outside_file(tmp_path)
    os.symlink(target, path(voldir, 'volume-new.stratum.new'))
    result = run_module(volume, nfs_args(voldir, **args))
    one_sentence(result, 'volume-new.stratum.new')
    assert open(target, 'rb').read() == OUTSIDE_CONTENT
    assert not os.path.lexists(path(voldir, 'volume-new'))
    # the leftover is listed, and removing the volume removes the link, not what it points to
    assert listed(voldir, 'new')['status'] == 'creating'
    assert ok(run_module(volume, nfs_args(voldir, name='new', state='absent')))['changed']
    assert not os.path.lexists(path(voldir, 'volume-new.stratum.new'))
    assert open(target, 'rb').read() == OUTSIDE_CONTENT
    assert ok(run_module(volume, nfs_args(voldir, **args)))['changed']
    assert not os.path.islink(path(voldir, 'volume-new'))


def test_planted_symlink_for_a_snapshot_marked_creating_is_never_followed(voldir, tmp_path):
    build(voldir, ['s1'])
    meta = read_meta(voldir, 'v')
    meta['snapshots']['s9'] = {'created': '2026-01-01T00:00:00Z', 'status': 'creating'}
    write_meta(voldir, 'v', meta)
    target = outside_file(tmp_path)
    os.symlink(target, path(voldir, 'volume-v.s9'))
    result = run_module(snapshot, nfs_args(voldir, volume='v', name='s9'))
    one_sentence(result, 'volume-v.s9')
    assert open(target, 'rb').read() == OUTSIDE_CONTENT
    assert read_info(str(voldir), 'v')['active'] == 'volume-v.s1'


def test_leftover_overlay_of_an_interrupted_create_is_replaced(voldir):
    build(voldir, ['s1'])
    meta = read_meta(voldir, 'v')
    meta['snapshots']['s9'] = {'created': '2026-01-01T00:00:00Z', 'status': 'creating'}
    write_meta(voldir, 'v', meta)
    with open(path(voldir, 'volume-v.s9'), 'wb') as handle:
        handle.write(b'partial')
    assert ok(run_module(snapshot, nfs_args(voldir, volume='v', name='s9')))['changed']
    assert read_info(str(voldir), 'v')['active'] == 'volume-v.s9'


def test_lock_file_symlink_creates_nothing_outside(voldir, tmp_path):
    build(voldir, ['s1'])
    target = str(tmp_path / 'created-outside')
    os.unlink(path(voldir, 'volume-v.stratum.lock'))
    os.symlink(target, path(voldir, 'volume-v.stratum.lock'))
    before = tree_state(str(voldir))
    one_sentence(run_module(snapshot, nfs_args(voldir, volume='v', name='s2')), 'volume-v.stratum.lock')
    assert not os.path.lexists(target)
    assert tree_state(str(voldir)) == before


# -- 2. the format is never read from guest-writable content ---------------------------------------

def qcow2_header_bytes(scratch):
    fake = os.path.join(scratch, 'fake.qcow2')
    sh('qemu-img', 'create', '-q', '-f', 'qcow2', fake, '1G')
    with open(fake, 'rb') as handle:
        return handle.read(65536)


def test_raw_volume_with_a_guest_written_qcow2_header_stays_raw(voldir, scratch):
    ok(run_module(volume, nfs_args(voldir, name='v', size='1M')))
    header = qcow2_header_bytes(scratch)
    with open(path(voldir, 'volume-v'), 'r+b') as handle:  # what the guest writes to its disk
        handle.write(header)
    vol = listed(voldir, 'v')
    assert vol['status'] == 'available' and vol['details']['format'] == 'raw' and vol['size'] == 1 << 20, vol
    assert not ok(run_module(volume, nfs_args(voldir, name='v', size='1M', format='raw')))['changed']
    guest = image_digest(path(voldir, 'volume-v'), 'raw', scratch)
    ok(run_module(volume, nfs_args(voldir, name='c', source_volume='v')))
    assert image_digest(path(voldir, 'volume-c'), 'raw', scratch) == guest
    assert ok(run_module(volume, nfs_args(voldir, name='v', size='2M')))['changed']
    assert os.path.getsize(path(voldir, 'volume-v')) == 2 << 20
    with open(path(voldir, 'volume-v'), 'rb') as handle:
        assert handle.read(len(header)) == header


def cinder_chain(voldir, tmp_path, base_content, declare=True):
    """A Cinder volume (no metadata of ours): raw base with ``base_content``, one overlay, the info file."""
    base = path(voldir, 'volume-c1')
    sh('qemu-img', 'create', '-q', '-f', 'raw', base, '1M')
    with open(base, 'r+b') as handle:
        handle.write(base_content)
    sh('qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', 'volume-c1', 'volume-c1.s1', cwd=str(voldir))
    if not declare:
        strip_backing_format(path(voldir, 'volume-c1.s1'))
    with open(path(voldir, 'volume-c1.info'), 'w') as handle:
        json.dump({'active': 'volume-c1.s1', 's1': 'volume-c1.s1'}, handle)


def vmdk_descriptor(secret):
    return ('# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n'
            'RW 16 FLAT "%s" 0\n' % secret).encode()


def test_overlay_without_backing_format_never_lets_qemu_probe_the_base(voldir, tmp_path, scratch):
    secret = outside_file(tmp_path, 'secret')
    cinder_chain(voldir, tmp_path, vmdk_descriptor(secret), declare=False)
    assert listed(voldir, 'c1')['details']['format'] == 'raw'
    ok(run_module(volume, nfs_args(voldir, name='copy', source_volume='c1')))
    with open(path(voldir, 'volume-copy'), 'rb') as handle:
        assert b'must never change' not in handle.read()
    assert ok(run_module(snapshot, nfs_args(voldir, volume='c1', name='s1', state='absent')))['changed']
    assert open(secret, 'rb').read() == OUTSIDE_CONTENT


def test_undecidable_format_is_refused_untouched(voldir, tmp_path, scratch):
    cinder_chain(voldir, tmp_path, qcow2_header_bytes(scratch), declare=False)
    vol = listed(voldir, 'c1')
    assert vol['status'] == 'error' and 'format' in vol['details']['reason'], vol
    before = tree_state(str(voldir))
    commands = []
    one_sentence(run_module(volume, nfs_args(voldir, name='copy', source_volume='c1'), commands=commands))
    one_sentence(run_module(snapshot, nfs_args(voldir, volume='c1', name='s1', state='absent'), commands=commands))
    assert commands == [] and tree_state(str(voldir)) == before


def test_every_qemu_img_call_names_every_format(voldir):
    build(voldir, ['s1', 's2', 's3'])
    commands = []
    ok(run_module(volume, nfs_args(voldir, name='v', size='2M'), commands=commands))
    ok(run_module(volume, nfs_args(voldir, name='c', source_volume='v', source_snapshot='s2'), commands=commands))
    ok(run_module(volume, nfs_args(voldir, name='d', source_volume='v'), commands=commands))
    for victim in ('s2', 's3', 's1'):
        ok(run_module(snapshot, nfs_args(voldir, volume='v', name=victim, state='absent'), commands=commands))
    for argv in commands:
        if argv[1] in ('convert', 'resize', 'commit', 'check'):
            assert '--image-opts' in argv, argv
            spec = argv[argv.index('--image-opts') + 1]
            layers = spec.count('driver=') - spec.count('file.driver=')
            assert layers == spec.count('file.filename='), argv
        elif argv[1] in ('create', 'rebase', 'info'):
            assert '-f' in argv, argv
            assert '-b' not in argv or '-F' in argv, argv


# -- 3. OSErrors are one sentence; listings show error with a reason --------------------------------

ENOSPC = OSError(errno.ENOSPC, 'No space left on device')


@pytest.mark.parametrize('module, args', [
    (snapshot, dict(volume='v', name='s3')),
    (snapshot, dict(volume='v', name='s1', state='absent')),
    (volume, dict(name='n', size='1M')),
], ids=['snapshot-create', 'snapshot-delete', 'raw-create'])
def test_full_disk_while_writing_metadata_is_one_sentence(voldir, module, args):
    build(voldir)
    with mock.patch.object(_files.os, 'fsync', side_effect=ENOSPC):
        one_sentence(run_module(module, nfs_args(voldir, **args)), 'No space left on device')
    assert not [f for f in os.listdir(str(voldir)) if f.endswith('.tmp') or f == 'volume-n.stratum.new']


@pytest.mark.skipif(os.geteuid() != 0, reason='chattr +i needs root')
@pytest.mark.parametrize('module, args', [
    (snapshot, dict(volume='v', name='s3')),
    (snapshot, dict(volume='v', name='s1', state='absent')),
    (volume, dict(name='n', size='1M')),
    (volume, dict(name='v', state='absent', force=True)),
], ids=['snapshot-create', 'snapshot-delete', 'create', 'delete'])
def test_immutable_directory_is_one_sentence(voldir, module, args):
    build(voldir)
    os.unlink(path(voldir, 'volume-v.stratum.lock'))
    sh('chattr', '+i', str(voldir))
    try:
        one_sentence(run_module(module, nfs_args(voldir, **args)))
    finally:
        sh('chattr', '-i', str(voldir))


@pytest.mark.parametrize('which', ['info', 'stratum.json', 'stratum.lock'])
def test_directory_in_place_of_a_file_is_one_sentence_and_listed(voldir, which):
    build(voldir, ['s1'])
    target = path(voldir, 'volume-v.%s' % which)
    if os.path.exists(target):
        os.unlink(target)
    os.mkdir(target)
    vol = listed(voldir, 'v')
    assert vol['status'] == 'error' and 'volume-v.%s' % which in vol['details']['reason'], vol
    assert all(s['status'] == 'error' for s in snapshots_of(voldir, 'v'))
    one_sentence(run_module(snapshot, nfs_args(voldir, volume='v', name='s2')), 'volume-v.%s' % which)


@pytest.mark.parametrize('meta', [
    {'snapshots': {'s1': 'x'}}, {'snapshots': [1]}, {'status': 5}, {'status': 'weird'}, {'created': 7},
    {'origin': 'v'}, {'format': 'vmdk'}, {'snapshots': {'s1': {'status': 'weird'}}}, [],
], ids=['entry-str', 'list', 'status-int', 'status-weird', 'created-int', 'origin-str', 'format', 'entry-status',
        'not-object'])
def test_wrongly_typed_metadata_lists_error_and_refuses_changes(voldir, meta):
    build(voldir, ['s1'])
    write_meta(voldir, 'v', meta)
    vol = listed(voldir, 'v')
    assert vol['status'] == 'error' and 'volume-v.stratum.json' in vol['details']['reason'], vol
    one_sentence(run_module(snapshot, nfs_args(voldir, volume='v', name='s2')), 'volume-v.stratum.json')


# -- 4. a FIFO never hangs a reader ------------------------------------------------------------------

@pytest.mark.parametrize('which', ['info', 'stratum.json'])
def test_fifo_in_place_of_a_json_file_does_not_hang(voldir, which):
    build(voldir, ['s1'])
    fifo = path(voldir, 'volume-v.%s' % which)
    os.unlink(fifo)
    os.mkfifo(fifo)
    found = {}
    reader = threading.Thread(target=lambda: found.update(vol=listed(voldir, 'v')), daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # release the blocked reader
        reader.join(10)
        raise AssertionError('volume_info hangs on a FIFO')
    assert found['vol']['status'] == 'error' and 'regular file' in found['vol']['details']['reason']


# -- 5. names are matched in full ----------------------------------------------------------------------

@pytest.mark.parametrize('name', ['abc\n', 's\n', 'abc\r', '\nabc'])
def test_name_with_a_newline_is_invalid(name):
    with pytest.raises(InvalidInputError):
        validate_name(name, 'volume')


def test_names_with_a_trailing_newline_create_nothing(voldir):
    one_sentence(run_module(volume, nfs_args(voldir, name='abc\n', size='1M')), 'Volume name')
    assert os.listdir(str(voldir)) == []
    build(voldir, ['s1'])
    before = tree_state(str(voldir))
    one_sentence(run_module(snapshot, nfs_args(voldir, volume='v', name='s\n')), 'Snapshot name')
    assert tree_state(str(voldir)) == before


def test_info_file_key_with_a_trailing_newline_is_refused(voldir):
    build(voldir, ['s1'])
    info = read_info(str(voldir), 'v')
    info['s1\n'] = info.pop('s1')
    with open(path(voldir, 'volume-v.info'), 'w') as handle:
        json.dump(info, handle)
    assert listed(voldir, 'v')['status'] == 'error'


# -- 6. an empty source_snapshot is an invalid name -------------------------------------------------------

@pytest.mark.parametrize('args, words', [
    (dict(source_volume='v', source_snapshot=''), ['Source snapshot name']),
    (dict(source_volume=''), ['Source volume name']),
], ids=['snapshot', 'volume'])
def test_empty_source_names_fail_like_invalid_names(voldir, args, words):
    build(voldir, ['s1'])
    before = tree_state(str(voldir))
    one_sentence(run_module(volume, nfs_args(voldir, name='c', **args)), *words)
    assert tree_state(str(voldir)) == before


# -- 7. every file an operation rewrites or removes is probed --------------------------------------------

class Holder:
    """A qemu-io process holding an image open, as an attached QEMU does."""

    def __init__(self, filename, fmt='qcow2', read_only=False):
        argv = ['qemu-io', '-f', fmt] + (['-r'] if read_only else []) + [filename]
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)

    def __enter__(self):
        time.sleep(0.5)
        assert self.process.poll() is None
        return self

    def __exit__(self, *exc):
        self.process.communicate(b'quit\n', timeout=10)


@pytest.mark.parametrize('module, args', [
    (volume, dict(name='v', state='absent', force=True)),
    (snapshot, dict(volume='v', name='s1', state='absent')),
    (snapshot, dict(volume='v', name='s2', state='absent')),
], ids=['volume-delete', 'snapshot-delete-held-overlay', 'snapshot-delete-held-below'])
@pytest.mark.parametrize('read_only', [False, True], ids=['writer', 'reader'])
def test_held_file_below_the_active_one_is_in_use(voldir, module, args, read_only):
    build(voldir, ['s1', 's2', 's3'])
    before = tree_state(str(voldir))
    with Holder(path(voldir, 'volume-v.s1'), read_only=read_only):
        for check in (True, False):
            one_sentence(run_module(module, nfs_args(voldir, **args), check=check), 'is in use')
            assert tree_state(str(voldir)) == before
    assert [s['status'] for s in snapshots_of(voldir, 'v')] == ['available'] * 3
    assert not ok(run_module(snapshot, nfs_args(voldir, volume='v', name='s1')))['changed']


def test_full_disk_before_a_commit_marks_nothing_pending(voldir):
    build(voldir, ['s1', 's2'])
    qemu_write(path(voldir, 'volume-v.s2'), 'qcow2', 7, '512k', '256k')
    before = tree_state(str(voldir))
    full = os.statvfs_result((4096, 4096, 1000, 0, 0, 1000, 0, 0, 0, 255))
    with mock.patch.object(_nfs.os, 'statvfs', return_value=full):
        one_sentence(run_module(snapshot, nfs_args(voldir, volume='v', name='s2', state='absent')), 'space')
    assert tree_state(str(voldir)) == before
    assert not ok(run_module(snapshot, nfs_args(voldir, volume='v', name='s2')))['changed']


# -- 8. a failed clone leaves no partial file ------------------------------------------------------------

REAL_QEMU_IMG = _nfs.NfsBackend._qemu_img


def failing_convert(backend, *args, **kwargs):
    result = REAL_QEMU_IMG(backend, *args, **kwargs)
    if args[0] == 'convert':
        raise CommandError('Command qemu-img convert failed: No space left on device (rc=1).')
    return result


def test_failed_clone_removes_its_partial_file(voldir):
    build(voldir, ['s1'])
    with mock.patch.object(_nfs.NfsBackend, '_qemu_img', failing_convert):
        one_sentence(run_module(volume, nfs_args(voldir, name='c', source_volume='v')), 'No space')
    assert not os.path.lexists(path(voldir, 'volume-c.stratum.new'))
    assert listed(voldir, 'c') is None


def test_partial_file_of_a_killed_clone_is_listed_and_removed(voldir):
    build(voldir, ['s1'])
    with open(path(voldir, 'volume-c.stratum.new'), 'wb') as handle:
        handle.write(b'\0' * 4096)
    write_meta(voldir, 'c', {'created': '2026-01-01T00:00:00Z', 'origin': {'volume': 'v', 'snapshot': None},
                             'snapshots': {}, 'format': 'raw'})  # killed between the metadata and the rename
    vol = listed(voldir, 'c')
    assert vol['status'] == 'creating' and vol['details']['reason'], vol
    one_sentence(run_module(volume, nfs_args(voldir, name='c', source_volume='v')), 'state=absent')
    predicted = ok(run_module(volume, nfs_args(voldir, name='c', state='absent'), check=True))
    assert predicted['changed'] and os.path.exists(path(voldir, 'volume-c.stratum.new'))
    assert ok(run_module(volume, nfs_args(voldir, name='c', state='absent')))['changed']
    assert listed(voldir, 'c') is None and not [f for f in os.listdir(str(voldir)) if f.startswith('volume-c.')]
    assert not ok(run_module(volume, nfs_args(voldir, name='c', state='absent')))['changed']


# -- 9. readers do not report a change in progress as error ---------------------------------------------

LOCK_HOLDER = '''
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
'''


READERS = {
    'volume_info': lambda voldir: [listed(voldir, 'v')['status']],
    'snapshot_info': lambda voldir: [s['status'] for s in snapshots_of(voldir, 'v')],
}


@pytest.mark.parametrize('reader', sorted(READERS))
def test_reader_waits_for_a_change_in_progress(voldir, reader):
    build(voldir, ['s1', 's2'])
    holder = subprocess.Popen([sys.executable, '-c', LOCK_HOLDER, path(voldir, 'volume-v.stratum.lock')],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout.readline() == b'locked\n'
    # the state half-way through a delete of the newest snapshot, as another host's run leaves it for a moment
    os.rename(path(voldir, 'volume-v.s2'), path(voldir, 'moved-away'))
    found = {}
    thread = threading.Thread(target=lambda: found.update(statuses=READERS[reader](voldir)), daemon=True)
    thread.start()
    time.sleep(1)
    os.rename(path(voldir, 'moved-away'), path(voldir, 'volume-v.s2'))
    holder.communicate(b'', timeout=10)
    thread.join(20)
    assert set(found['statuses']) == {'available'}, found


def test_reader_creates_no_lock_file(voldir):
    ok(run_module(volume, nfs_args(voldir, name='v', size='1M')))
    os.unlink(path(voldir, 'volume-v.stratum.lock'))
    before = tree_state(str(voldir))
    assert listed(voldir, 'v')['status'] == 'available'
    snapshots_of(voldir, 'v')
    ok(run_module(snapshot, nfs_args(voldir, volume='v', name='s1'), check=True))
    assert tree_state(str(voldir)) == before


# -- 10. check mode predicts the record the real run returns --------------------------------------------

def crash_on_rebase(backend, *args, **kwargs):
    if args[0] == 'rebase':
        raise Crash()
    return REAL_QEMU_IMG(backend, *args, **kwargs)


def test_prediction_skips_a_pending_delete_as_parent(voldir):
    build(voldir, ['a', 'b'])
    with mock.patch.object(_nfs.NfsBackend, '_qemu_img', crash_on_rebase):
        with pytest.raises(Crash):
            run_module(snapshot, nfs_args(voldir, volume='v', name='a', state='absent'))
    assert [s['status'] for s in snapshots_of(voldir, 'v')] == ['available', 'pending_delete']
    predicted = ok(run_module(snapshot, nfs_args(voldir, volume='v', name='c'), check=True))['snapshot']
    real = ok(run_module(snapshot, nfs_args(voldir, volume='v', name='c')))['snapshot']
    assert real['parent'] == 'b'
    # only the run that takes the snapshot knows its time and its UUID
    assert predicted == dict(real, created=None, details=dict(real['details'], uuid=None))


PREDICTED = [
    ([], volume, dict(name='n', size='1M')),
    ([], volume, dict(name='n', size='1M', format='qcow2')),
    (['s1'], volume, dict(name='n', source_volume='v', source_snapshot='s1', format='qcow2')),
    (['s1'], volume, dict(name='n', source_volume='v', size='2M')),
    (['s1'], volume, dict(name='v', size='4M')),
    (['s1'], snapshot, dict(volume='v', name='s2')),
    ([], snapshot, dict(volume='v', name='s2')),
]


@pytest.mark.parametrize('snaps, module, args', PREDICTED,
                         ids=['create', 'create-qcow2', 'clone-snapshot', 'clone-live', 'grow', 'snapshot',
                              'snapshot-of-base'])
def test_check_mode_predicts_the_whole_record(voldir, snaps, module, args):
    build(voldir, snaps)
    key = 'volume' if module is volume else 'snapshot'
    predicted = ok(run_module(module, nfs_args(voldir, **args), check=True))
    real = ok(run_module(module, nfs_args(voldir, **args)))
    created = predicted[key]['created'] if predicted['diff']['before'] else None
    # only the run that takes a snapshot knows its time and its UUID
    details = dict(real[key]['details'], uuid=None) if key == 'snapshot' else real[key]['details']
    assert predicted[key] == dict(real[key], created=created, details=details)
    assert predicted['diff']['after'] == dict(real['diff']['after'], created=created, details=details)


# -- 11. finishing an interrupted delete repairs leaked clusters -------------------------------------------

def leak_a_cluster(filename):
    """Allocate a zero cluster, then drop it from the L2 table: what a commit killed half-way leaves."""
    qemu_write(filename, 'qcow2', 0, '768k', '64k')
    with open(filename, 'r+b') as handle:
        head = handle.read(72)
        cluster_bits = struct.unpack('>I', head[20:24])[0]
        l1_offset = struct.unpack('>Q', head[40:48])[0]
        handle.seek(l1_offset)
        l2_offset = struct.unpack('>Q', handle.read(8))[0] & 0x00fffffffffffe00
        handle.seek(l2_offset + 8 * ((768 << 10) >> cluster_bits))
        handle.write(b'\0' * 8)
    result = subprocess.run(['qemu-img', 'check', '-f', 'qcow2', filename], capture_output=True, check=False)
    assert result.returncode == 3, result


def crash_after_commit(backend, *args, **kwargs):
    result = REAL_QEMU_IMG(backend, *args, **kwargs)
    if args[0] == 'commit':
        raise Crash()
    return result


def test_finishing_an_interrupted_newest_delete_repairs_leaks(voldir, scratch):
    build(voldir, ['s1', 's2', 's3'])
    qemu_write(path(voldir, 'volume-v.s3'), 'qcow2', 9, 0)
    live = image_digest(path(voldir, 'volume-v.s3'), 'qcow2', scratch)
    with mock.patch.object(_nfs.NfsBackend, '_qemu_img', crash_after_commit):
        with pytest.raises(Crash):
            run_module(snapshot, nfs_args(voldir, volume='v', name='s3', state='absent'))
    leak_a_cluster(path(voldir, 'volume-v.s2'))
    assert ok(run_module(snapshot, nfs_args(voldir, volume='v', name='s3', state='absent')))['changed']
    assert read_info(str(voldir), 'v')['active'] == 'volume-v.s2'
    sh('qemu-img', 'check', '-f', 'qcow2', path(voldir, 'volume-v.s2'))
    assert image_digest(path(voldir, 'volume-v.s2'), 'qcow2', scratch) == live


# -- 12. small ones ----------------------------------------------------------------------------------------

def test_failed_create_leaves_no_lock_file(voldir):
    one_sentence(run_module(volume, nfs_args(voldir, name='n2', size='99999999999P')))
    assert os.listdir(str(voldir)) == []


def test_configuration_of_another_backend_is_refused(voldir):
    one_sentence(run_module(volume, nfs_args(voldir, name='n', size='1M', lvm={'vg': 'x'})), 'lvm', 'nfs')
    assert os.listdir(str(voldir)) == []


def test_unreadable_info_file_lists_the_volume_as_error_in_snapshot_info(voldir):
    build(voldir, ['s1', 's2'])
    with open(path(voldir, 'volume-v.info'), 'w') as handle:
        handle.write('{"active": ')
    snaps = snapshots_of(voldir, 'v')
    assert snaps and all(s['status'] == 'error' and s['volume'] == 'v' and s['details']['reason'] for s in snaps)
    assert sorted(s['name'] for s in snaps) == ['s1', 's2']
    os.unlink(path(voldir, 'volume-v.stratum.json'))
    snaps = snapshots_of(voldir, 'v')
    assert [(s['name'], s['status']) for s in snaps] == [(None, 'error')], snaps


# -- a read is not a rewrite: a clone of a point in time of an attached volume ---------------------

def test_snapshot_of_an_attached_volume_is_cloned_and_its_live_data_is_not(voldir):
    """A running guest writes the active file and only reads its backing files."""
    build(voldir, ['s1', 's2'])
    expected = image_digest(path(voldir, 'volume-v.s1'), 'qcow2', str(voldir))
    with Holder(path(voldir, 'volume-v.s2')):
        for check in (True, False):
            result = ok(run_module(volume, nfs_args(voldir, name='c', source_volume='v', source_snapshot='s2'),
                                   check=check))
            assert result['changed']
        live = run_module(volume, nfs_args(voldir, name='d', source_volume='v'))
        one_sentence(live, 'is in use', 'may be writing what a clone would read')
    assert image_digest(path(voldir, 'volume-c'), 'raw', str(voldir)) == expected
    assert not os.path.lexists(path(voldir, 'volume-d'))


def test_a_writer_of_a_file_below_the_point_in_time_refuses_the_clone(voldir):
    """A process that writes a backing file (a commit by another tool) changes what the clone would read."""
    build(voldir, ['s1', 's2'])
    before = tree_state(str(voldir))
    with Holder(path(voldir, 'volume-v.s1')):
        result = run_module(volume, nfs_args(voldir, name='c', source_volume='v', source_snapshot='s2'))
        one_sentence(result, 'is in use', 'volume-v.s1')
    assert tree_state(str(voldir)) == before


# -- a name swapped between the check and the command -------------------------------------------------
# A tenant who can write into the directory renames a link over a file name after the
# module has checked it and before qemu-img opens it. Every command works on descriptors
# of the checked files (/dev/fd/N), so the swap changes nothing outside the directory.

REAL_RUN = _nfs.NfsBackend._qemu_img


def swap_before(verb, victim, target):
    """Run qemu-img ``verb`` right after ``victim`` was replaced by a link to ``target``."""
    def run(backend, *args, **kwargs):
        if args[0] == verb and os.path.lexists(victim) and not os.path.islink(victim):
            planted = victim + '.planted'
            os.symlink(target, planted)
            os.rename(planted, victim)
        return REAL_RUN(backend, *args, **kwargs)
    return mock.patch.object(_nfs.NfsBackend, '_qemu_img', run)


@pytest.mark.parametrize('case', ['create raw', 'create qcow2', 'clone', 'snapshot', 'grow', 'delete snapshot'])
def test_a_name_swapped_before_the_command_never_redirects_a_write(voldir, tmp_path, case):
    target = outside_file(tmp_path)
    with open(target, 'rb') as handle:
        content = handle.read()
    if case.startswith('create'):
        verb, victim = 'create', path(voldir, 'volume-new.stratum.new')
        module, args = volume, dict(name='new', size='1M', format=case.split()[1])
    elif case == 'clone':
        build(voldir, ['s1'])
        verb, victim = 'convert', path(voldir, 'volume-new.stratum.new')
        module, args = volume, dict(name='new', source_volume='v')
    elif case == 'snapshot':
        build(voldir, ['s1'])
        verb, victim = 'create', path(voldir, 'volume-v.s2')
        module, args = snapshot, dict(volume='v', name='s2')
    elif case == 'grow':
        build(voldir, ['s1'])
        verb, victim = 'resize', path(voldir, 'volume-v.s1')
        module, args = volume, dict(name='v', size='2M')
    else:
        build(voldir, ['s1', 's2'])
        verb, victim = 'commit', path(voldir, 'volume-v')
        module, args = snapshot, dict(volume='v', name='s1', state='absent')
    with swap_before(verb, victim, target):
        result = run_module(module, nfs_args(voldir, **args))
    with open(target, 'rb') as handle:
        assert handle.read() == content, result
    assert os.stat(target).st_size == len(content)
    if result.get('failed'):
        assert '\n' not in result['msg'].strip() and 'Traceback' not in result['msg'], result


def test_a_hard_linked_lock_file_keeps_its_mode(voldir, tmp_path):
    target = outside_file(tmp_path)
    os.chmod(target, 0o600)
    os.link(target, path(voldir, 'volume-new.stratum.lock'))
    run_module(volume, nfs_args(voldir, name='new', size='1M'))
    assert oct(os.stat(target).st_mode & 0o777) == oct(0o600)


def test_a_hard_linked_image_is_refused_and_never_cloned(voldir, tmp_path):
    secret = outside_file(tmp_path, 'secret')
    os.link(secret, path(voldir, 'volume-x'))
    listed = run_module(volume_info, nfs_args(voldir, name='x'))['volumes']
    assert listed[0]['status'] == 'error' and 'hard links' in listed[0]['details']['reason']
    one_sentence(run_module(volume, nfs_args(voldir, name='y', source_volume='x')), 'status is error')
    assert not os.path.lexists(path(voldir, 'volume-y'))


def test_root_squashed_by_the_server_still_takes_snapshots(voldir):
    """A squashed root cannot give files Cinder's owner; it keeps going with the mode alone."""
    build(voldir, ['s1'])
    os.chown(path(voldir, 'volume-v'), 165, 165)

    def squashed(fd, uid, gid):
        raise PermissionError(errno.EPERM, 'Operation not permitted')

    with mock.patch.object(_files.os, 'fchown', squashed):
        assert ok(run_module(snapshot, nfs_args(voldir, volume='v', name='s2')))['changed']
