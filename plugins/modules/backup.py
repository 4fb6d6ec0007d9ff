#!/usr/bin/python
# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: backup
short_description: Keep a backup of a volume's snapshot in a repository of qcow2 chains
version_added: 0.2.0
description:
  - Makes backup O(name) of snapshot O(snapshot) of volume O(volume) exist in O(repository), or not exist.
  - >-
    The repository keeps volume V(V) as the qcow2 volume C(volume-V) in Cinder's NFS layout, and each backup as a
    snapshot of it. A backup writes what changed into that volume's active file, then takes the snapshot, so
    every backup is a point in time of one chain, and the first one stores everything.
  - >-
    An incremental backup writes only the 64 KiB clusters that differ from what the repository holds (the source
    snapshot of the newest backup, matched by its identity - LV UUID, ZFS guid or the snapshot's UUID on the nfs
    backend). On O(backend=nfs) and on thin LVs it reads only those clusters, found from the qcow2 allocation maps
    or with C(thin_delta) on a reserved metadata snapshot of the pool. On thick LVs and on ZFS, or when the base
    snapshot is gone, it reads the whole snapshot and the repository volume and writes only the clusters that
    differ (C(details.method=compare)).
  - >-
    On O(backend=zfs) the snapshot is read from its device node; the zvol's C(snapdev) is set to V(visible) while
    it is read and set back afterwards.
  - >-
    While a backup is being written it lists with status V(creating) and cannot be restored; the backups before it
    stay restorable. A run that was cut off is discarded by the next run on that volume, which stores it again if
    it asks for the same backup.
  - >-
    Deleting a backup keeps every other backup of the volume byte-for-byte (the nfs backend's snapshot delete).
  - The repository records the source (host, backend, location, volume) of each volume's backups; backups of
    another volume of the same name into the same repository are refused.
  - Restore a backup with M(stratum.storage.volume) and O(stratum.storage.volume#module:source_backup).
options:
  volume:
    description: Name of the source volume, and of its volume in the repository.
    type: str
    required: true
  snapshot:
    description:
      - The snapshot of O(volume) to back up.
      - Required with O(state=present); with O(state=absent) it only names the backup when O(name) is not given.
    type: str
  name:
    description: Name of the backup; defaults to O(snapshot). One of O(name) and O(snapshot) is required.
    type: str
  repository:
    required: true
  verify:
    description:
      - Read the stored backup and the source snapshot and compare them; the SHA-256 checksum is recorded in
        C(details.checksum). A backup stored without it is verified by a later run that asks for it.
    type: bool
    default: false
  state:
    description: Whether the backup exists.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - stratum.storage._repository
  - stratum.storage._backend
  - stratum.storage._backend.CHANGES
  - stratum.storage._lvm
  - stratum.storage._nfs
  - stratum.storage._zfs
seealso:
  - module: stratum.storage.backup_info
  - module: stratum.storage.snapshot
  - module: stratum.storage.volume
author:
  - stratum.storage maintainers (@stratum-storage)
'''

EXAMPLES = r'''
- name: Back up tonight's snapshot of a thin LV to an NFS share, and verify it
  stratum.storage.backup:
    backend: lvm
    lvm:
      vg: vg0
      thin_pool: pool0
    volume: db01-data
    snapshot: nightly-2026-11-24
    repository:
      share: backup1:/export/backups
      mount_options: vers=4.2
    verify: true

- name: Delete one backup; the others keep their content
  stratum.storage.backup:
    backend: zfs
    zfs:
      parent: tank/volumes
    volume: db01-data
    snapshot: nightly-2026-11-20
    repository:
      path: /srv/backups
    state: absent
'''

RETURN = r'''
backup:
  description:
    - The backup after the change, in the uniform schema; V(null) when it does not exist.
    - In check mode this is the predicted backup; what only the copy can tell (bytes, checksum, times) is V(null).
  returned: always
  type: dict
  contains:
    name:
      description: Backup name.
      type: str
      returned: success
      sample: nightly-2026-11-24
    volume:
      description: The source volume.
      type: str
      returned: success
      sample: db01-data
    backend:
      description: The source volume's backend type.
      type: str
      returned: success
      sample: lvm
    status:
      description: V(available), V(creating) while it is written (or after a cut-off run), V(pending_delete) or V(error).
      type: str
      returned: success
      sample: available
    size:
      description: Size in bytes of the backed-up snapshot.
      type: int
      returned: success
      sample: 10737418240
    created:
      description: When the backup was completed, ISO 8601 UTC.
      type: str
      returned: success
      sample: "2026-11-24T01:10:42Z"
    parent:
      description: The previous backup of the volume in the repository, or V(null).
      type: str
      returned: success
      sample: nightly-2026-11-23
    details:
      description:
        - C(host), C(source_backend), C(source_location), C(source_volume) - where the backup came from.
        - C(snapshot), C(identity), C(snapshot_created) - the source snapshot and its identity.
        - C(method) - V(full), V(changes) (a change set from snapshot C(base)) or V(compare).
        - C(bytes_read) - bytes read from the source snapshot; C(bytes_written) - data bytes written to the
          repository; C(bytes_zeroed) - bytes recorded as zeros without data; all measured during the copy.
        - C(started), C(finished), C(checksum) (V(sha256:...) once verified), C(repository), C(image).
      type: dict
      returned: success
      sample: {"host": "db01.example.com", "source_backend": "lvm", "source_location": "vg0",
               "source_volume": "db01-data", "snapshot": "nightly-2026-11-24",
               "identity": "Hk3kDn-pL1x-o7fW-xLxW-6qMe-Xo1q-AY1Zfa", "method": "changes",
               "base": "nightly-2026-11-23", "bytes_read": 4194304, "bytes_written": 4194304, "bytes_zeroed": 0,
               "checksum": null, "repository": "/srv/backups", "image": "volume-db01-data.nightly-2026-11-23"}
actions:
  description: What the run changed, or would change in check mode, one sentence each.
  returned: always
  type: list
  elements: str
  sample: ["store snapshot nightly-2026-11-24 of volume db01-data as backup nightly-2026-11-24 (the changes since snapshot nightly-2026-11-23)"]
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.stratum.storage.plugins.module_utils._argspec import backup_kwargs
from ansible_collections.stratum.storage.plugins.module_utils._manager import run_module


def main():
    run_module(AnsibleModule(**backup_kwargs()), 'backup')


if __name__ == '__main__':
    main()
