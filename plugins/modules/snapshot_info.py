#!/usr/bin/python
# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: snapshot_info
short_description: List snapshots of one volume or of every volume
version_added: 0.1.0
description:
  - Lists snapshots in the uniform schema shared by every backend, oldest first within each volume.
  - Never changes anything.
  - On O(backend=nfs) snapshots that Cinder took are listed too; values this collection did not record are
    derived from the files where possible.
  - On O(backend=lvm) the order (and so C(parent)) comes from the C(stratum_created) tag; an overflowed
    COW snapshot lists as V(error), a merging one as V(pending_delete).
  - On O(backend=zfs) the order comes from C(createtxg); a snapshot waiting for a deferred destroy lists as
    V(pending_delete), one still arriving as V(inbound).
options:
  volume:
    description: List only the snapshots of this volume. Without it, the snapshots of every volume are listed.
    type: str
extends_documentation_fragment:
  - stratum.storage._backend
  - stratum.storage._backend.INFO
  - stratum.storage._lvm
  - stratum.storage._nfs
  - stratum.storage._zfs
seealso:
  - module: stratum.storage.snapshot
  - module: stratum.storage.volume_info
author:
  - stratum.storage maintainers (@stratum-storage)
'''

EXAMPLES = r'''
- name: List the snapshots of one volume
  stratum.storage.snapshot_info:
    backend: nfs
    nfs:
      path: /srv/volumes
    volume: db01-data
  register: snaps

- name: Print them as a table
  ansible.builtin.debug:
    msg: "{{ snaps.snapshots | map(attribute='name') | list }}"
'''

RETURN = r'''
snapshots:
  description: The snapshots, grouped by volume (sorted by name) and oldest first within a volume.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description:
        - Snapshot name.
        - Null in the one record of status V(error) that stands for a volume whose snapshots cannot be read
          (O(backend=nfs) with an unreadable info file and no metadata naming them).
      type: str
      returned: success
      sample: nightly-2026-11-21
    volume:
      description: Name of the volume it belongs to.
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
      description: Virtual size in bytes of the snapshot's point-in-time image; V(null) when unknown.
      type: int
      returned: success
      sample: 10737418240
    created:
      description: When the snapshot was taken, ISO 8601 UTC; see RV(stratum.storage.snapshot#module:snapshot.created).
      type: str
      returned: success
      sample: "2026-11-21T23:05:07Z"
    parent:
      description: The previous snapshot in the same volume's chain, or V(null) for the oldest.
      type: str
      returned: success
      sample: nightly-2026-11-20
    details:
      description: What only this backend has; see RV(stratum.storage.snapshot#module:snapshot.details).
      type: dict
      returned: success
      sample: {"file": "volume-db01-data.nightly-2026-11-21", "image": "volume-db01-data", "image_format": "raw"}
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.stratum.storage.plugins.module_utils._argspec import snapshot_info_kwargs
from ansible_collections.stratum.storage.plugins.module_utils._manager import run_module


def main():
    run_module(AnsibleModule(**snapshot_info_kwargs()), 'snapshot_info')


if __name__ == '__main__':
    main()
