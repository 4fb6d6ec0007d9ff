# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup planner and the restore branch of the volume planner, called directly: no backend, no module."""

from __future__ import annotations

import inspect

import pytest

from ansible_collections.stratum.storage.plugins.module_utils._backend import Backend, RepositoryVerb, Verb
from ansible_collections.stratum.storage.plugins.module_utils._errors import InvalidInputError, StorageError
from ansible_collections.stratum.storage.plugins.module_utils._planner import NO_SETTINGS, plan_backup, plan_volume
from ansible_collections.stratum.storage.plugins.module_utils._repository import Repository
from ansible_collections.stratum.storage.plugins.module_utils._schema import Snapshot, Volume

MiB = 1 << 20
UUID1 = '11111111-1111-4111-8111-111111111111'
UUID2 = '22222222-2222-4222-8222-222222222222'
UUID3 = '33333333-3333-4333-8333-333333333333'


def source_snapshot(name, identity, status='available', size=8 * MiB):
    return Snapshot(name=name, volume='v', backend='nfs', status=status, size=size, created='2026-01-01T00:00:00Z',
                    parent=None, details={'uuid': identity})


def stored(name, snapshot, identity, status='available', parent=None, checksum=None, **details):
    """A backup record as ``Repository.read`` lists it."""
    info = {'repository': '/srv/backups', 'host': 'db01', 'source_backend': 'nfs', 'source_location': '/srv/volumes',
            'source_volume': 'v', 'snapshot': snapshot, 'identity': identity, 'method': 'full', 'base': None,
            'checksum': checksum, 'image': None if status == 'creating' else 'volume-v'}
    info.update(details)
    return Snapshot(name=name, volume='v', backend='nfs', status=status, size=None if status == 'creating' else 8 * MiB,
                    created='2026-01-01T00:00:00Z', parent=parent, details=info)


def desired(name='b3', snapshot='s3', state='present', verify=False):
    return dict(name=name, volume='v', snapshot=snapshot, state=state, verify=verify)


def check_repository_action(action, verb, **kwargs):
    assert action.verb == verb.value
    assert set(action.kwargs) == set(kwargs), action.kwargs
    for key, value in kwargs.items():
        assert action.kwargs[key] is value or action.kwargs[key] == value, key
    # the keyword arguments are exactly what the repository's method takes
    inspect.signature(getattr(Repository, action.verb)).bind(None, **action.kwargs)


def one_sentence(message):
    assert message.endswith('.') and '\n' not in message, message
    assert '. ' not in message.rstrip('.'), message


# -- plan_backup: present ---------------------------------------------------------------------


def test_first_backup_stores_everything_with_no_parent():
    s1 = source_snapshot('s1', UUID1)
    actions, predicted = plan_backup(desired('b1', 's1'), s1, UUID1, [], None, 'nfs')
    assert len(actions) == 1
    check_repository_action(actions[0], RepositoryVerb.STORE_BACKUP, volume='v', name='b1', snapshot=s1,
                            verify=False)
    assert actions[0].kwargs['snapshot'] is s1
    assert 'all of it' in actions[0].description
    assert predicted.name == 'b1' and predicted.volume == 'v' and predicted.backend == 'nfs'
    assert predicted.status == 'available'
    assert predicted.parent is None
    assert predicted.size == s1.size
    assert predicted.details['snapshot'] == 's1'
    assert predicted.details['identity'] == UUID1
    assert predicted.details['base'] is None
    # only the copy can tell these
    assert predicted.details['bytes_read'] is None and predicted.details['bytes_written'] is None
    assert predicted.details['checksum'] is None


def test_incremental_passes_the_base_and_takes_the_newest_available_backup_as_parent():
    s2, s3 = source_snapshot('s2', UUID2), source_snapshot('s3', UUID3, size=16 * MiB)
    backups = [stored('b1', 's1', UUID1), stored('b2', 's2', UUID2, parent='b1'),
               stored('b9', 's9', None, status='creating', parent='b2')]
    actions, predicted = plan_backup(desired('b3', 's3', verify=True), s3, UUID3, backups, s2, 'nfs')
    assert len(actions) == 1
    check_repository_action(actions[0], RepositoryVerb.STORE_BACKUP, volume='v', name='b3', snapshot=s3,
                            verify=True)
    assert 'the changes since snapshot s2' in actions[0].description
    assert actions[0].description.endswith(', then verify it')
    # an unfinished backup is never a parent
    assert predicted.parent == 'b2'
    assert predicted.size == 16 * MiB
    assert predicted.details['base'] == 's2'
    assert predicted.details['identity'] == UUID3


def test_incremental_without_a_base_compares_with_the_newest_backup():
    s3 = source_snapshot('s3', UUID3)
    backups = [stored('b1', 's1', UUID1), stored('b2', 's2', UUID2, parent='b1')]
    actions, predicted = plan_backup(desired('b3', 's3'), s3, UUID3, backups, None, 'nfs')
    check_repository_action(actions[0], RepositoryVerb.STORE_BACKUP, volume='v', name='b3', snapshot=s3,
                            verify=False)
    assert 'differs from backup b2' in actions[0].description
    assert predicted.parent == 'b2' and predicted.details['base'] is None


def test_an_unfinished_backup_of_the_same_name_is_stored_again():
    s3 = source_snapshot('s3', UUID3)
    backups = [stored('b1', 's1', UUID1), stored('b3', 's3', UUID3, status='creating', parent='b1')]
    actions, predicted = plan_backup(desired('b3', 's3'), s3, UUID3, backups, None, 'nfs')
    assert len(actions) == 1
    check_repository_action(actions[0], RepositoryVerb.STORE_BACKUP, volume='v', name='b3', snapshot=s3,
                            verify=False)
    assert actions[0].description.startswith('discard the unfinished backup b3, then store')
    assert predicted.parent == 'b1' and predicted.status == 'available'


def test_existing_available_backup_is_no_change():
    s1 = source_snapshot('s1', UUID1)
    existing = stored('b1', 's1', UUID1)
    actions, predicted = plan_backup(desired('b1', 's1'), s1, UUID1, [existing], None, 'nfs')
    assert actions == []
    assert predicted is existing


def test_existing_backup_needs_no_source_snapshot_when_nothing_is_to_do():
    existing = stored('b1', 's1', UUID1)
    actions, predicted = plan_backup(desired('b1', 's1'), None, None, [existing], None, 'nfs')
    assert actions == [] and predicted is existing


def test_existing_backup_with_verify_and_no_checksum_is_verified_only():
    s1 = source_snapshot('s1', UUID1)
    existing = stored('b1', 's1', UUID1)
    actions, predicted = plan_backup(desired('b1', 's1', verify=True), s1, UUID1, [existing], None, 'nfs')
    assert len(actions) == 1
    check_repository_action(actions[0], RepositoryVerb.VERIFY_BACKUP, volume='v', name='b1', snapshot=s1)
    assert actions[0].description == 'verify backup b1 of volume v against snapshot s1'
    assert predicted is existing


def test_existing_verified_backup_with_verify_is_no_change():
    s1 = source_snapshot('s1', UUID1)
    existing = stored('b1', 's1', UUID1, checksum='sha256:' + '0' * 64)
    assert plan_backup(desired('b1', 's1', verify=True), s1, UUID1, [existing], None, 'nfs') == ([], existing)


def test_verify_of_an_existing_backup_needs_its_source_snapshot():
    existing = stored('b1', 's1', UUID1)
    with pytest.raises(StorageError) as error:
        plan_backup(desired('b1', 's1', verify=True), None, None, [existing], None, 'nfs')
    one_sentence(error.value.message)
    assert 'Snapshot s1 of volume v does not exist' in error.value.message


def test_existing_backup_of_another_snapshot_name_is_refused_naming_both():
    s2 = source_snapshot('s2', UUID2)
    existing = stored('b1', 's1', UUID1)
    with pytest.raises(StorageError) as error:
        plan_backup(desired('b1', 's2'), s2, UUID2, [existing], None, 'nfs')
    message = error.value.message
    one_sentence(message)
    assert 'snapshot s1' in message and 'snapshot s2' in message
    assert message.startswith('Backup b1 of volume v')


def test_existing_backup_of_another_snapshot_identity_is_refused_naming_both():
    s1_again = source_snapshot('s1', UUID2)  # deleted and taken again under the same name
    existing = stored('b1', 's1', UUID1)
    with pytest.raises(StorageError) as error:
        plan_backup(desired('b1', 's1', verify=True), s1_again, UUID2, [existing], None, 'nfs')
    message = error.value.message
    one_sentence(message)
    assert UUID1 in message and UUID2 in message


def test_a_backend_without_identities_matches_by_name():
    s1 = source_snapshot('s1', None)
    existing = stored('b1', 's1', None)
    assert plan_backup(desired('b1', 's1'), s1, None, [existing], None, 'lvm') == ([], existing)


@pytest.mark.parametrize('status', ['pending_delete', 'error'])
def test_existing_backup_in_a_bad_status_is_refused(status):
    s1 = source_snapshot('s1', UUID1)
    existing = stored('b1', 's1', UUID1, status=status)
    with pytest.raises(StorageError) as error:
        plan_backup(desired('b1', 's1'), s1, UUID1, [existing], None, 'nfs')
    one_sentence(error.value.message)
    assert 'Backup b1 of volume v is in status %s' % status in error.value.message


def test_existing_backup_in_error_gives_its_reason():
    s1 = source_snapshot('s1', UUID1)
    existing = stored('b1', 's1', UUID1, status='error', reason='Volume v: the chain is broken; refused.')
    with pytest.raises(StorageError) as error:
        plan_backup(desired('b1', 's1'), s1, UUID1, [existing], None, 'nfs')
    assert error.value.message == 'Volume v: the chain is broken; refused.'


def test_missing_source_snapshot_is_refused():
    with pytest.raises(StorageError) as error:
        plan_backup(desired('b3', 's3'), None, None, [stored('b1', 's1', UUID1)], None, 'nfs')
    one_sentence(error.value.message)
    assert error.value.message == 'Snapshot s3 of volume v does not exist, so backup b3 cannot be made of it.'


@pytest.mark.parametrize('status', ['creating', 'pending_delete', 'error'])
def test_unavailable_source_snapshot_is_refused(status):
    s3 = source_snapshot('s3', UUID3, status=status)
    with pytest.raises(StorageError) as error:
        plan_backup(desired('b3', 's3'), s3, UUID3, [], None, 'nfs')
    one_sentence(error.value.message)
    assert 'Snapshot s3 of volume v is in status %s' % status in error.value.message


# -- plan_backup: absent ----------------------------------------------------------------------


def test_absent_of_a_missing_backup_is_no_change():
    assert plan_backup(desired('b9', 's9', state='absent'), None, None, [stored('b1', 's1', UUID1)], None,
                       'nfs') == ([], None)


def test_absent_of_an_available_backup_deletes_it():
    backups = [stored('b1', 's1', UUID1), stored('b2', 's2', UUID2, parent='b1')]
    actions, predicted = plan_backup(desired('b1', 's1', state='absent'), None, None, backups, None, 'nfs')
    assert predicted is None
    assert len(actions) == 1
    check_repository_action(actions[0], RepositoryVerb.DELETE_BACKUP, volume='v', name='b1')
    assert actions[0].description == 'delete backup b1 of volume v'


def test_absent_of_a_creating_backup_discards_it():
    backups = [stored('b1', 's1', UUID1), stored('b2', 's2', UUID2, status='creating', parent='b1')]
    actions, predicted = plan_backup(desired('b2', 's2', state='absent'), None, None, backups, None, 'nfs')
    assert predicted is None
    assert len(actions) == 1
    check_repository_action(actions[0], RepositoryVerb.DELETE_BACKUP, volume='v', name='b2')
    assert 'discard' in actions[0].description
    assert actions[0].description == 'discard the unfinished backup b2 of volume v'


# -- plan_volume: restore ---------------------------------------------------------------------

IMAGE = object()  # stands for the BackupImage the manager passes; the planner only hands it on


def restore(size=None, fmt=None, state='present'):
    return dict(name='r', state=state, size=size, format=fmt, source_volume='v', source_snapshot=None,
                source_backup='b1', force=False)


def repository_volume():
    return Volume(name='v', backend='nfs', status='available', size=8 * MiB, details={'format': 'qcow2'})


def test_restore_of_a_missing_backup_is_refused():
    for volume in (None, repository_volume()):
        with pytest.raises(StorageError) as error:
            plan_volume(restore(), None, [], volume, None, 'nfs', 512, NO_SETTINGS, None)
        one_sentence(error.value.message)
        assert error.value.message == ('Backup b1 of volume v is not in the repository, so volume r cannot be '
                                       'restored from it.')


@pytest.mark.parametrize('status', ['creating', 'pending_delete', 'error'])
def test_restore_of_a_backup_that_is_not_available_is_refused(status):
    backup = stored('b1', 's1', UUID1, status=status)
    with pytest.raises(StorageError) as error:
        plan_volume(restore(), None, [], repository_volume(), backup, 'nfs', 512, NO_SETTINGS, IMAGE)
    one_sentence(error.value.message)
    assert error.value.message == 'Backup b1 of volume v cannot be restored: its status is %s.' % status


def test_restore_smaller_than_the_backup_is_refused():
    backup = stored('b1', 's1', UUID1)
    with pytest.raises(InvalidInputError) as error:
        plan_volume(restore(size=4 * MiB), None, [], repository_volume(), backup, 'nfs', 512, NO_SETTINGS, IMAGE)
    one_sentence(error.value.message)
    assert 'never shrinks' in error.value.message and str(8 * MiB) in error.value.message


@pytest.mark.parametrize('size, unit, expected', [
    (None, 512, 8 * MiB),
    (None, 3 * MiB, 9 * MiB),          # the backup's size rounded up to the target's unit
    (10 * MiB + 1, 512, 10 * MiB + 512),
    (10 * MiB, 4 * MiB, 12 * MiB),
])
def test_restore_creates_the_volume_with_the_size_rounded_up(size, unit, expected):
    backup = stored('b1', 's1', UUID1)
    actions, predicted = plan_volume(restore(size=size), None, [], repository_volume(), backup, 'lvm', unit,
                                     NO_SETTINGS, IMAGE)
    assert len(actions) == 1
    action = actions[0]
    assert action.verb == Verb.RESTORE_VOLUME.value == 'restore_volume'
    assert action.kwargs == dict(name='r', image=IMAGE, size=expected, fmt='raw')
    assert action.kwargs['image'] is IMAGE
    inspect.signature(getattr(Backend, action.verb)).bind(None, **action.kwargs)
    assert action.checks == []
    assert action.description == ('restore backup b1 of volume v into new raw volume r of %d bytes' % expected)
    assert predicted.to_dict() == dict(name='r', backend='lvm', status='available', size=expected, created=None,
                                       origin=None, details={'format': 'raw'})


def test_restore_keeps_the_format_asked_for():
    backup = stored('b1', 's1', UUID1)
    actions, predicted = plan_volume(restore(fmt='qcow2'), None, [], repository_volume(), backup, 'nfs', 512,
                                     NO_SETTINGS, IMAGE)
    assert actions[0].kwargs['fmt'] == 'qcow2'
    assert predicted.details == {'format': 'qcow2'} and predicted.origin is None


def test_restore_never_overwrites_an_existing_volume():
    current = Volume(name='r', backend='nfs', status='available', size=2 * MiB, details={'format': 'raw'})
    backup = stored('b1', 's1', UUID1)
    actions, predicted = plan_volume(restore(), current, [], repository_volume(), backup, 'nfs', 512, NO_SETTINGS,
                                     IMAGE)
    assert actions == []
    assert predicted is current


def test_restore_with_state_absent_of_a_missing_volume_is_no_change():
    assert plan_volume(restore(state='absent'), None, [], None, None, 'nfs', 512, NO_SETTINGS, None) == ([], None)
