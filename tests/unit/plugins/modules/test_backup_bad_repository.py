# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A repository that cannot be used is refused with one sentence, and nothing is changed anywhere."""

from __future__ import annotations

import os

import pytest

from ansible_collections.stratum.storage.plugins.modules import backup_info, volume
from ansible_collections.stratum.storage.tests.unit.helpers import nfs_args, run_module, sh, tree_state
from ansible_collections.stratum.storage.tests.unit.plugins.modules.backup_support import (
    ProcessRecorder, listed, repository, repository_meta, run_backup, write_repository_meta)


def one_sentence(result, *paths):
    """The message of a failed result, checked to be one sentence; ``paths`` it names are left out of the check."""
    assert result['failed'], result
    message = result['msg']
    assert isinstance(message, str) and message.endswith('.') and '\n' not in message, message
    words = message
    for path in paths:
        words = words.replace(path, 'PATH')
    assert 'Traceback' not in words and '. ' not in words, message
    return message


def two_backups(source, repo):
    """v with backups b1 and b2 in ``repo``, and a third snapshot s3 not backed up yet."""
    source.create('v', '1M')
    source.write(0x11, 0)
    source.snapshot('s1')
    assert run_backup(source, repo, 's1', name='b1')['changed']
    source.write(0x22, '512k')
    source.snapshot('s2')
    with ProcessRecorder() as processes:
        assert run_backup(source, repo, 's2', name='b2')['changed']
    # the recorder sees what a backup starts, so an empty record below means that nothing ran
    assert {'qemu-img', 'qemu-nbd'} <= set(argv[0] for argv in processes.commands), processes.commands
    source.write(0x33, '256k')
    source.snapshot('s3')


def states(*directories):
    return [tree_state(d) if os.path.isdir(d) else os.path.lexists(d) for d in directories]


# -- the repository path ----------------------------------------------------------------------


def missing(tmp_path):
    return str(tmp_path / 'no-such-directory')


def regular_file(tmp_path):
    path = str(tmp_path / 'a-file')
    with open(path, 'w') as handle:
        handle.write('not a directory\n')
    return path


@pytest.mark.parametrize('make', [missing, regular_file], ids=['missing', 'regular-file'])
def test_a_repository_path_that_is_not_a_directory_is_refused(source, target, tmp_path, make):
    source.create('v', '1M')
    source.snapshot('s1')
    path = make(tmp_path)
    before = states(source.directory, target, path)
    for check in (True, False):
        runs = [
            ('backup', run_backup(source, path, 's1', check=check)),
            ('backup_info', run_module(backup_info, {'repository': repository(path)}, check=check)),
            ('restore', run_module(volume, nfs_args(target, name='r', source_volume='v', source_backup='s1',
                                                    repository=repository(path)), check=check)),
        ]
        for what, result in runs:
            message = one_sentence(result, path)
            assert path in message, (what, message)
            words = message.replace(path, 'PATH')
            if make is regular_file:
                assert 'not a directory' in words, (what, message)
            else:
                assert 'does not exist' in words, (what, message)
            # the sentence says that it is the repository that is wrong, not a volume directory
            assert 'repository' in words.lower(), (what, message)
    assert states(source.directory, target, path) == before


@pytest.mark.parametrize('spelling', ['same', 'slash', 'dot', 'symlink'])
@pytest.mark.parametrize('state', ['present', 'absent'])
def test_the_volume_directory_itself_is_refused_as_repository(source, tmp_path, spelling, state):
    source.create('v', '1M')
    source.write(0x11, 0)
    source.snapshot('s1')
    path = {'same': source.directory, 'slash': source.directory + '/', 'dot': os.path.join(source.directory, '.'),
            'symlink': str(tmp_path / 'link')}[spelling]
    if spelling == 'symlink':
        os.symlink(source.directory, path)
    before = tree_state(source.directory)
    with ProcessRecorder() as processes:
        result = run_backup(source, path, 's1', state=state)
    message = one_sentence(result, path)
    assert message == ('The repository %s is the volume directory of the nfs backend itself; keep backups in another '
                       'directory.' % path)
    assert processes.commands == []
    assert tree_state(source.directory) == before


# -- hostile chains in the repository ---------------------------------------------------------


def rebase(directory, image, backing, fmt='qcow2'):
    sh('qemu-img', 'rebase', '-u', '-f', 'qcow2', '-F', fmt, '-b', backing, image, cwd=directory)


def absolute_backing(repo, tmp_path):
    rebase(repo, 'volume-v.b1', os.path.join(repo, 'volume-v'))


def outside_backing(repo, tmp_path):
    other = str(tmp_path / 'other')
    os.mkdir(other)
    sh('qemu-img', 'create', '-q', '-f', 'qcow2', os.path.join(other, 'volume-v'), '1M')
    rebase(repo, 'volume-v.b1', '../other/volume-v')


def symlinked_base(repo, tmp_path):
    target = str(tmp_path / 'elsewhere.qcow2')
    os.rename(os.path.join(repo, 'volume-v'), target)
    os.symlink(target, os.path.join(repo, 'volume-v'))


def symlinked_overlay(repo, tmp_path):
    target = str(tmp_path / 'elsewhere.qcow2')
    os.rename(os.path.join(repo, 'volume-v.b1'), target)
    os.symlink(target, os.path.join(repo, 'volume-v.b1'))


def info_escapes(repo, tmp_path):
    with open(os.path.join(repo, 'volume-v.info'), 'w') as handle:
        handle.write('{"active": "../volumes/volume-v", "b1": "volume-v.b1", "b2": "volume-v.b2"}')


HOSTILE = [absolute_backing, outside_backing, symlinked_base, symlinked_overlay, info_escapes]
#: a new backup, the verify of an existing one, the delete of one
CHANGES = [dict(snapshot='s3', name='b3'), dict(snapshot='s1', name='b1', verify=True),
           dict(snapshot='s1', name='b1', state='absent')]


@pytest.mark.parametrize('corrupt', HOSTILE)
def test_a_hostile_chain_in_the_repository_is_refused_untouched(source, repo, target, tmp_path, corrupt):
    two_backups(source, repo)
    corrupt(repo, tmp_path)
    other = str(tmp_path / 'other')
    before = states(repo, source.directory, target, other)
    with ProcessRecorder() as processes:
        for check in (True, False):
            for change in CHANGES:
                args = dict(change)
                result = run_backup(source, repo, args.pop('snapshot'), check=check, **args)
                message = one_sentence(result, repo, str(tmp_path))
                assert message.startswith('Repository %s: ' % repo), (change, message)
                assert 'refused' in message or 'regular file' in message, (change, message)
            # a restore from it is refused too, and the listing shows its backups in status error
            restored = run_module(volume, nfs_args(target, name='r', source_volume='v', source_backup='b1',
                                                   repository=repository(repo)), check=check)
            message = one_sentence(restored, repo)
            assert message.startswith('Backup b1 of volume v'), message
        found = run_module(backup_info, {'repository': repository(repo), 'volume': 'v'})
    assert not found['failed'] and not found['changed'], found
    assert [(b['name'], b['status']) for b in found['backups']] == [('b1', 'error'), ('b2', 'error')], found
    assert processes.commands == [], 'no command may run on a hostile chain'
    assert states(repo, source.directory, target, other) == before


# -- a repository volume that holds another volume's backups ----------------------------------


@pytest.mark.parametrize('field, value', [('location', '/srv/other-volumes'), ('host', 'other-host.example.com'),
                                          ('backend', 'zfs')])
def test_backups_of_another_volume_of_the_same_name_are_refused(source, repo, target, field, value):
    two_backups(source, repo)
    meta = repository_meta(repo)
    meta['source'][field] = value
    write_repository_meta(repo, meta)
    before = states(repo, source.directory, target)
    listing = listed(repo)
    with ProcessRecorder() as processes:
        for check in (True, False):
            for args in (dict(snapshot='s3', name='b3'), dict(snapshot='s1', name='b1', verify=True)):
                result = run_backup(source, repo, args.pop('snapshot'), check=check, **args)
                message = one_sentence(result, repo, source.directory)
                assert message.startswith('Repository %s holds backups of volume v from ' % repo), message
                assert value in message and source.directory in message, message
                assert 'use another repository' in message
    assert processes.commands == []
    assert states(repo, source.directory, target) == before
    # the backups that are there stay listed and restorable
    assert listed(repo) == listing
    restored = run_module(volume, nfs_args(target, name='r', source_volume='v', source_backup='b1',
                                           repository=repository(repo)))
    assert restored['changed'] and not restored['failed'], restored
