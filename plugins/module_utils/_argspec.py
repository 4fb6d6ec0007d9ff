# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs, built from shared pieces: the backend selection plus each module's own options.

Each backend has one dict option named after it; adding a backend adds one
entry to ``BACKEND_OPTIONS`` (and its doc fragment).
"""

from __future__ import annotations

import copy

NFS_OPTIONS = dict(
    share=dict(type='str'),
    path=dict(type='path'),
    mount_point_base=dict(type='path', default='/var/lib/stratum-storage/mnt'),
    mount_options=dict(type='str'),
)

LVM_OPTIONS = dict(
    vg=dict(type='str', required=True),
    thin_pool=dict(type='str'),
    snapshot_size=dict(type='raw'),
)

ZFS_OPTIONS = dict(
    parent=dict(type='str', required=True),
    properties=dict(type='dict', default={}),
    sparse=dict(type='bool', default=False),
)

BACKEND_OPTIONS = {
    'lvm': dict(type='dict', options=LVM_OPTIONS),
    'nfs': dict(type='dict', options=NFS_OPTIONS,
                mutually_exclusive=[['share', 'path']], required_one_of=[['share', 'path']]),
    'zfs': dict(type='dict', options=ZFS_OPTIONS),
}

STATE = dict(type='str', default='present', choices=['present', 'absent'])


def module_kwargs(argument_spec, **extra):
    """Keyword arguments for ``AnsibleModule``: shared backend options plus ``argument_spec``."""
    spec = dict(backend=dict(type='str', required=True, choices=sorted(BACKEND_OPTIONS)))
    spec.update(copy.deepcopy(BACKEND_OPTIONS))
    spec.update(argument_spec)
    required_if = [('backend', name, (name,)) for name in sorted(BACKEND_OPTIONS)]
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
        force=dict(type='bool', default=False),
    ), required_by={'source_snapshot': 'source_volume'})


def snapshot_kwargs():
    return module_kwargs(dict(
        volume=dict(type='str', required=True),
        name=dict(type='str', required=True),
        state=dict(STATE),
    ))


def volume_info_kwargs():
    return module_kwargs(dict(name=dict(type='str')))


def snapshot_info_kwargs():
    return module_kwargs(dict(volume=dict(type='str')))
