# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs, built from shared pieces: the backend selection plus each module's own options.

Each backend has one dict option named after it, taken from the registry
(``_registry.BACKENDS``); nothing here names a backend.
"""

from __future__ import annotations

import copy

from ansible_collections.stratum.storage.plugins.module_utils._registry import BACKENDS

STATE = dict(type='str', default='present', choices=['present', 'absent'])


#: where backups are kept: a directory, or an NFS share mounted the way the nfs backend mounts one
REPOSITORY = dict(type='dict', options=dict(
    path=dict(type='path'),
    share=dict(type='str'),
    mount_point_base=dict(type='path', default='/var/lib/stratum-storage/mnt'),
    mount_options=dict(type='str'),
    file_mode=dict(type='str', default='0600'),
), mutually_exclusive=[['path', 'share']], required_one_of=[['path', 'share']])


def module_kwargs(argument_spec, backend_required=True, **extra):
    """Keyword arguments for ``AnsibleModule``: shared backend options plus ``argument_spec``."""
    spec = dict(backend=dict(type='str', required=backend_required, choices=sorted(BACKENDS)))
    spec.update((name, copy.deepcopy(entry.option)) for name, entry in BACKENDS.items())
    spec.update(argument_spec)
    required_if = [('backend', name, (name,)) for name in sorted(BACKENDS)]
    required_if += extra.pop('required_if', [])
    return dict(argument_spec=spec, supports_check_mode=True, required_if=required_if, **extra)


def volume_kwargs():
    return module_kwargs(dict(
        name=dict(type='str', required=True),
        state=dict(STATE),
        size=dict(type='raw'),
        format=dict(type='str', choices=['raw', 'qcow2']),
        source_volume=dict(type='str'),
        source_snapshot=dict(type='str'),
        source_backup=dict(type='str'),
        repository=copy.deepcopy(REPOSITORY),
        force=dict(type='bool', default=False),
    ), required_by={'source_snapshot': 'source_volume', 'source_backup': ('source_volume', 'repository')},
        mutually_exclusive=[['source_snapshot', 'source_backup']])


def snapshot_kwargs():
    return module_kwargs(dict(
        volume=dict(type='str', required=True),
        name=dict(type='str', required=True),
        state=dict(STATE),
        temporary=dict(type='bool', default=False),
    ))


def backup_kwargs():
    return module_kwargs(dict(
        volume=dict(type='str', required=True),
        snapshot=dict(type='str'),
        name=dict(type='str'),
        repository=copy.deepcopy(dict(REPOSITORY, required=True)),
        verify=dict(type='bool', default=False),
        state=dict(STATE),
    ), required_if=[('state', 'present', ('snapshot',))], required_one_of=[['name', 'snapshot']])


def backup_info_kwargs():
    return module_kwargs(dict(
        volume=dict(type='str'),
        repository=copy.deepcopy(dict(REPOSITORY, required=True)),
    ), backend_required=False)


def volume_info_kwargs():
    return module_kwargs(dict(name=dict(type='str')))


def snapshot_info_kwargs():
    return module_kwargs(dict(volume=dict(type='str')))


#: where a replica goes: the peer reached over SSH and the place on it, one dict of the source's backend type
TARGET = dict(type='dict', required=True, options=dict(
    host=dict(type='str', required=True),
    port=dict(type='int', default=22),
    user=dict(type='str', default='root'),
    key=dict(type='path'),
    known_hosts=dict(type='path'),
    connect_timeout=dict(type='int', default=30),
    volume=dict(type='str'),
    zfs=dict(type='dict', options=dict(parent=dict(type='str', required=True))),
    lvm=dict(type='dict', options=dict(vg=dict(type='str', required=True), thin_pool=dict(type='str'))),
    nfs=dict(type='dict', options=dict(path=dict(type='path', required=True))),
), mutually_exclusive=[['zfs', 'lvm', 'nfs']], required_one_of=[['zfs', 'lvm', 'nfs']])


def replica_kwargs():
    return module_kwargs(dict(
        volume=dict(type='str', required=True),
        snapshot=dict(type='str', required=True),
        target=copy.deepcopy(TARGET),
        intermediate=dict(type='bool', default=False),
        state=dict(STATE),
    ))
