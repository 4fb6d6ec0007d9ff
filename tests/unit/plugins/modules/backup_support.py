# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the backup tests: an nfs source volume whose snapshots have known content, and a repository."""

from __future__ import annotations

import json
import os
import subprocess
from unittest import mock

from ansible_collections.stratum.storage.plugins.modules import backup, backup_info, snapshot, snapshot_info, volume
from ansible_collections.stratum.storage.tests.unit.helpers import (
    image_digest, nfs_args, qemu_write, read_info, run_module)

KiB = 1 << 10
MiB = 1 << 20
#: the keys of every record in the uniform schema
SNAPSHOT_KEYS = {'name', 'volume', 'backend', 'status', 'size', 'created', 'parent', 'details'}


class Source:
    """Volumes in an nfs backend directory; the digest of every snapshot is kept when it is taken."""

    def __init__(self, voldir, scratch):
        self.directory = str(voldir)
        self.scratch = scratch
        self.digests = {}

    def create(self, name='v', size='4M'):
        result = run_module(volume, nfs_args(self.directory, name=name, size=size))
        assert result['changed'] and not result['failed'], result
        return result['volume']

    def active(self, name='v'):
        """The active file of ``name`` and its format."""
        if os.path.exists(os.path.join(self.directory, 'volume-%s.info' % name)):
            return read_info(self.directory, name)['active'], 'qcow2'
        return 'volume-%s' % name, 'raw'

    def write(self, pattern, offset, length='64k', name='v'):
        active, fmt = self.active(name)
        qemu_write(os.path.join(self.directory, active), fmt, pattern, offset, length)

    def snapshot(self, snap, name='v', temporary=False):
        args = nfs_args(self.directory, volume=name, name=snap)
        if temporary:
            args['temporary'] = True
        result = run_module(snapshot, args)
        assert result['changed'] and not result['failed'], result
        record = result['snapshot']
        self.digests[(name, snap)] = image_digest(os.path.join(self.directory, record['details']['image']),
                                                  record['details']['image_format'], self.scratch)
        return record

    def delete_snapshot(self, snap, name='v'):
        result = run_module(snapshot, nfs_args(self.directory, volume=name, name=snap, state='absent'))
        assert result['changed'] and not result['failed'], result

    def snapshots(self, name='v'):
        listing = run_module(snapshot_info, nfs_args(self.directory, volume=name))['snapshots']
        return dict((s['name'], s) for s in listing)

    def digest(self, snap, name='v'):
        return self.digests[(name, snap)]


def repository(path, **extra):
    return dict(extra, path=str(path))


def run_backup(source, repo, snap, name=None, volume_name='v', check=False, commands=None, **extra):
    args = nfs_args(source.directory, volume=volume_name, snapshot=snap, repository=repository(repo), **extra)
    if name is not None:
        args['name'] = name
    return run_module(backup, args, check=check, commands=commands)


def listed(repo, volume_name='v'):
    """The backups of ``volume_name`` by name, as backup_info lists them."""
    result = run_module(backup_info, {'repository': repository(repo), 'volume': volume_name})
    assert not result['failed'] and not result['changed'], result
    return dict((b['name'], b) for b in result['backups'])


def stored_digest(repo, record, scratch):
    """Digest of a backup's image read straight from the repository's chain (its files, with qemu-img)."""
    return image_digest(os.path.join(str(repo), record['details']['image']), 'qcow2', scratch)


def restored_digest(repo, target, backup_name, scratch, volume_name='v'):
    """Restore the backup with the volume module into a new volume in ``target``; return its content's digest."""
    serial = len([f for f in os.listdir(str(target)) if f.startswith('volume-') and '.' not in f])
    name = 'r%d-%s' % (serial, backup_name)
    result = run_module(volume, nfs_args(str(target), name=name, source_volume=volume_name, source_backup=backup_name,
                                         repository=repository(repo)))
    assert result['changed'] and not result['failed'], result
    assert result['volume']['status'] == 'available', result
    return image_digest(os.path.join(str(target), 'volume-%s' % name), 'raw', scratch)


def repository_meta(repo, volume_name='v'):
    with open(os.path.join(str(repo), 'volume-%s.stratum.json' % volume_name)) as handle:
        return json.load(handle)


def write_repository_meta(repo, meta, volume_name='v'):
    with open(os.path.join(str(repo), 'volume-%s.stratum.json' % volume_name), 'w') as handle:
        json.dump(meta, handle)


class ProcessRecorder:
    """Records the argv of every process started while it is entered: commands of the runner and qemu-nbd."""

    def __init__(self):
        self.commands = []
        self._real = subprocess.Popen

    def __enter__(self):
        def popen(argv, *args, **kwargs):
            words = [os.fsdecode(a) for a in ([argv] if isinstance(argv, (str, bytes)) else argv)]
            self.commands.append([os.path.basename(words[0])] + words[1:])
            return self._real(argv, *args, **kwargs)
        self._patch = mock.patch.object(subprocess, 'Popen', popen)
        self._patch.start()
        return self

    def __exit__(self, *exc):
        self._patch.stop()
        return False
