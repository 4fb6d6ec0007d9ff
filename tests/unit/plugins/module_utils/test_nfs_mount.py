# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mounting a share: where, with which command, and never in check mode.

This machine cannot mount NFS, so the mount table and the runner are stand-ins
here; the real mount is exercised on the test hosts.
"""

from __future__ import annotations

import hashlib
import os
from unittest import mock

import pytest

from ansible_collections.stratum.storage.plugins.module_utils import _nfs
from ansible_collections.stratum.storage.plugins.module_utils._errors import InvalidInputError, StorageError

SHARE = 'nas1:/export/volumes'


class Runner:
    def __init__(self):
        self.commands = []

    def run(self, argv, **kwargs):
        self.commands.append(argv)


def backend(tmp_path, **extra):
    config = dict(share=SHARE, path=None, mount_point_base=str(tmp_path), mount_options=None)
    config.update(extra)
    return _nfs.NfsBackend(Runner(), config)


def mounts(*entries):
    return mock.patch.object(_nfs, '_mounts', lambda: iter(entries))


def test_mount_point_is_named_by_md5_of_the_share(tmp_path):
    expected = os.path.join(str(tmp_path), hashlib.md5(SHARE.encode()).hexdigest())
    assert backend(tmp_path).directory == expected


def test_unmounted_share_is_mounted_with_options(tmp_path):
    nfs = backend(tmp_path, mount_options='vers=4.2,soft')
    with mounts():
        done = nfs.connect(apply=True)
    assert nfs.runner.commands == [['mount', '-t', 'nfs', '-o', 'vers=4.2,soft', SHARE, nfs.directory]]
    assert os.path.isdir(nfs.directory) and done == ['mounted NFS share %s at %s' % (SHARE, nfs.directory)]


def test_mounted_share_is_nothing_to_do(tmp_path):
    nfs = backend(tmp_path)
    with mounts((nfs.directory, 'nfs4', SHARE)):
        assert nfs.connect(apply=True) == []
    assert nfs.runner.commands == []


def test_check_mode_never_mounts(tmp_path):
    nfs = backend(tmp_path)
    with mounts(), pytest.raises(StorageError) as err:
        nfs.connect(apply=False)
    assert 'this run does not mount it' in err.value.message
    assert nfs.runner.commands == [] and not os.path.exists(nfs.directory)


def test_something_else_mounted_there_is_refused(tmp_path):
    nfs = backend(tmp_path)
    with mounts((nfs.directory, 'ext4', '/dev/vdb')), pytest.raises(StorageError) as err:
        nfs.connect(apply=True)
    assert 'not from NFS share' in err.value.message and nfs.runner.commands == []


@pytest.mark.parametrize('share', ['nas1', '/export', 'nas1:export', 'a b:/x', ':/x'])
def test_bad_share_is_refused(tmp_path, share):
    with pytest.raises(InvalidInputError):
        backend(tmp_path, share=share)


def test_missing_path_is_refused(tmp_path):
    nfs = _nfs.NfsBackend(Runner(), dict(share=None, path=str(tmp_path / 'nope'), mount_point_base=None))
    with pytest.raises(StorageError) as err:
        nfs.connect(apply=True)
    assert 'does not exist' in err.value.message
