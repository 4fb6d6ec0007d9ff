# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every backend, once: its class (imported when a task uses it) and the argument spec of its dict option.

Adding a backend is one entry in ``BACKENDS``, besides the backend itself (a
``Backend`` subclass) and the documentation of its dict option
(``plugins/doc_fragments/_<name>.py``). Everything else derives from this
table: the argument spec of every module (``_argspec``), the class the manager
builds, the documented ``backend`` choices and the backend options every module
documents (``plugins/doc_fragments/_backend.py``).
"""

from __future__ import annotations

from typing import NamedTuple


# Each backend's module is imported only when a task uses it: a module run compiles its
# module_utils from the AnsiballZ zip every time (0.2 s for the nfs backend under emulation).
def _lvm():
    from ansible_collections.stratum.storage.plugins.module_utils._lvm import LvmBackend
    return LvmBackend


def _nfs():
    from ansible_collections.stratum.storage.plugins.module_utils._nfs import NfsBackend
    return NfsBackend


def _zfs():
    from ansible_collections.stratum.storage.plugins.module_utils._zfs import ZfsBackend
    return ZfsBackend


class Registered(NamedTuple):
    """One backend: a function that imports and returns its class, and the argument spec of its dict option."""

    load: object
    option: dict

    @property
    def backend(self):
        """The class that implements the backend."""
        return self.load()


BACKENDS = dict(
    lvm=Registered(_lvm, dict(type='dict', options=dict(
        vg=dict(type='str', required=True),
        thin_pool=dict(type='str'),
        snapshot_size=dict(type='raw'),
    ))),
    nfs=Registered(_nfs, dict(type='dict', options=dict(
        share=dict(type='str'),
        path=dict(type='path'),
        mount_point_base=dict(type='path', default='/var/lib/stratum-storage/mnt'),
        mount_options=dict(type='str'),
        file_mode=dict(type='str', default='0660'),
        cinder_compatible=dict(type='bool', default=False),
    ), mutually_exclusive=[['share', 'path']], required_one_of=[['share', 'path']])),
    zfs=Registered(_zfs, dict(type='dict', options=dict(
        parent=dict(type='str', required=True),
        properties=dict(type='dict', default={}),
        sparse=dict(type='bool', default=False),
    ))),
)
