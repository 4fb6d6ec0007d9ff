#!/usr/bin/python
# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: volume_info
short_description: List volumes of a backend
version_added: 0.1.0
description:
  - Lists one volume, or every volume of the backend, in the uniform schema shared by every backend.
  - Never changes anything.
  - On O(backend=nfs) every C(volume-<name>) in the directory is a volume. Image headers are read directly, and a
    volume whose chain does not follow the layout is listed with status V(error) and the reason in
    C(details.reason) rather than failing the whole listing.
  - On O(backend=lvm) one C(lvs) call lists the volume group; LVs with a C(stratum_volume) tag and no
    C(stratum_snapshot) tag are the volumes, whatever their names. An interrupted clone lists as V(creating).
  - On O(backend=zfs) one C(zfs list) call lists every zvol directly under O(zfs.parent), or with O(name) that zvol
    only; a partial receive lists as V(inbound).
options:
  name:
    description: List only this volume. Without it, every volume is listed.
    type: str
extends_documentation_fragment:
  - stratum.storage._backend
  - stratum.storage._backend.INFO
  - stratum.storage._lvm
  - stratum.storage._nfs
  - stratum.storage._zfs
seealso:
  - module: stratum.storage.volume
  - module: stratum.storage.snapshot_info
author:
  - stratum.storage maintainers (@stratum-storage)
'''

EXAMPLES = r'''
- name: List every volume in a directory
  stratum.storage.volume_info:
    backend: nfs
    nfs:
      path: /srv/volumes
  register: listing

- name: Show volumes that need attention
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.details.reason }}"
  loop: "{{ listing.volumes | selectattr('status', 'equalto', 'error') }}"
'''

RETURN = r'''
volumes:
  description: The volumes, sorted by name. Empty when there are none (or O(name) does not exist).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Volume name.
      type: str
      returned: success
      sample: db01-data
    backend:
      description: Backend type.
      type: str
      returned: success
      sample: nfs
    status:
      description: One of V(creating), V(available), V(pending_delete), V(inbound), V(error).
      type: str
      returned: success
      sample: available
    size:
      description: Size in bytes; V(null) when unknown.
      type: int
      returned: success
      sample: 10737418240
    created:
      description: Creation time, ISO 8601 UTC; V(null) when the backend does not know it.
      type: str
      returned: success
      sample: "2026-11-21T23:05:07Z"
    origin:
      description: For a clone, the source it was copied from; V(null) otherwise.
      type: dict
      returned: success
      sample: {"volume": "db01-data", "snapshot": "nightly-2026-11-20"}
    details:
      description: What only this backend has; see RV(stratum.storage.volume#module:volume.details).
      type: dict
      returned: success
      sample: {"directory": "/srv/volumes", "base_file": "volume-db01-data", "active_file": "volume-db01-data.s1",
               "format": "raw", "active_format": "qcow2", "files": ["volume-db01-data", "volume-db01-data.s1"],
               "info_file": "volume-db01-data.info"}
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.stratum.storage.plugins.module_utils._argspec import volume_info_kwargs
from ansible_collections.stratum.storage.plugins.module_utils._manager import run_module


def main():
    run_module(AnsibleModule(**volume_info_kwargs()), 'volume_info')


if __name__ == '__main__':
    main()
