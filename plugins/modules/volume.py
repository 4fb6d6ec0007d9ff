#!/usr/bin/python
# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: volume
short_description: Create, grow, clone and delete volumes
version_added: 0.1.0
description:
  - Makes a volume exist with at least the given size, or not exist.
  - A new volume is empty, or a full independent copy of another volume or of one of its snapshots.
  - A volume is grown when O(size) is larger than its current size. A smaller O(size) is refused; nothing is
    ever shrunk.
  - A volume that has snapshots is deleted only with O(force=true), which deletes its snapshots with it.
  - On O(backend=nfs) a volume is the file C(volume-<name>) and the qcow2 overlays of its snapshots; growing a
    volume that has snapshots grows its active overlay. A running process that holds the active file (an attached
    QEMU) makes a grow fail, and one that holds any file of the chain makes a delete fail, before anything is
    written. The base image's format is recorded at creation and never read from image content.
  - On O(backend=lvm) a volume is a thick LV, or a thin LV when O(lvm.thin_pool) is set, and C(details.path)
    is its block device. A thick volume that has snapshots cannot be grown (LVM grows a thick origin only while it is
    inactive). An inactive volume is activated.
  - On O(backend=zfs) a volume is a zvol; O(zfs.properties) are set on it, and C(details.path) is its
    C(/dev/zvol) device.
options:
  name:
    description: Name of the volume; 1 to 128 letters, digits, C(_) or C(-), starting with a letter or digit.
    type: str
    required: true
  state:
    description: Whether the volume exists.
    type: str
    choices: [present, absent]
    default: present
  size:
    description:
      - Size in bytes (an integer), or a string with a binary unit C(K), C(M), C(G), C(T) or C(P), optionally
        followed by C(iB) or C(B); C(10G), C(10GB) and C(10GiB) all mean 10 x 1024^3 bytes.
      - Rounded up to what the backend allocates in before comparing - 512 bytes on O(backend=nfs), the extent size
        on O(backend=lvm), the volblocksize on O(backend=zfs) - so C(64M), C(64MiB) and 16 extents of 4 MiB are the
        same size.
      - Required to create a volume unless O(source_volume) is given; a clone defaults to its source's size.
    type: raw
  format:
    description:
      - Image format of a new volume's base file on O(backend=nfs). Cinder's default is C(raw); snapshots work
        on either.
      - O(backend=lvm) and O(backend=zfs) store raw block devices only; C(qcow2) is refused there.
      - Defaults to C(raw) on creation. For an existing volume it is only compared; a different format is an
        error.
    type: str
    choices: [raw, qcow2]
  source_volume:
    description:
      - Create the volume as an independent full copy of this volume (or of O(source_snapshot) of it).
      - Used only when the volume does not exist yet. The copy is recorded in RV(volume.origin).
      - On O(backend=lvm) a thin source gives a thin snapshot made writable (no data is copied); a thick source is
        copied with C(dd) into a new LV, which lists with status C(creating) until the copy is complete.
      - On O(backend=zfs) the volume is a C(zfs clone) of the snapshot. Without O(source_snapshot) a snapshot named
        C(clone-<name>) of the source is taken first; like every snapshot a clone depends on, it can only be
        deleted as a deferred destroy while the clone exists.
    type: str
  source_snapshot:
    description: Copy this snapshot of O(source_volume) instead of its current content.
    type: str
  source_backup:
    description:
      - Restore this backup of O(source_volume) from O(repository) into the new volume, byte-for-byte, on any
        backend - a backup of an LV restores to a zvol or to a qcow2 file, and so on.
      - The new volume lists as V(creating) until the copy is complete; an existing volume is never overwritten
        (the task then only checks its size and format). Its C(origin) is V(null), since it depends on nothing.
      - Requires O(source_volume) (the volume the backup was made of) and O(repository).
    type: str
  force:
    description: With O(state=absent), also delete every snapshot of the volume.
    type: bool
    default: false
extends_documentation_fragment:
  - stratum.storage._backend
  - stratum.storage._backend.CHANGES
  - stratum.storage._repository
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
- name: Create a 10 GiB raw volume on an NFS share, mounted on demand
  stratum.storage.volume:
    backend: nfs
    nfs:
      share: nas1:/export/volumes
      mount_options: vers=4.2
    name: db01-data
    size: 10G

- name: Set the backend once for several tasks
  module_defaults:
    group/stratum.storage.storage:
      backend: nfs
      nfs:
        path: /srv/volumes
  block:
    - name: Grow the volume to 20 GiB (a smaller size is refused)
      stratum.storage.volume:
        name: db01-data
        size: 20GiB

    - name: Clone last night's snapshot into a new volume for a test restore
      stratum.storage.volume:
        name: db01-restore-test
        source_volume: db01-data
        source_snapshot: nightly-2026-11-20

    - name: Delete a volume together with its snapshots
      stratum.storage.volume:
        name: db01-restore-test
        state: absent
        force: true

- name: Restore a backup of an LV into a new zvol
  stratum.storage.volume:
    backend: zfs
    zfs:
      parent: tank/volumes
    name: db01-data-restored
    source_volume: db01-data
    source_backup: nightly-2026-11-20
    repository:
      share: backup1:/export/backups

- name: A 64 MiB thin LV; 64M, 64MiB and 16 extents of 4 MiB are the same size, so a second run changes nothing
  stratum.storage.volume:
    backend: lvm
    lvm:
      vg: vg0
      thin_pool: pool0
    name: web01-cache
    size: 64M

- name: A sparse zvol with lz4 compression, cloned from a snapshot of another zvol
  stratum.storage.volume:
    backend: zfs
    zfs:
      parent: tank/volumes
      sparse: true
      properties:
        compression: lz4
    name: db01-clone
    source_volume: db01-data
    source_snapshot: before-upgrade
'''

RETURN = r'''
volume:
  description:
    - The volume after the change, in the uniform schema shared by every backend. V(null) when it does not exist.
    - In check mode this is the predicted volume; values the backend assigns on creation are V(null).
  returned: always
  type: dict
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
      description: Size in bytes (the virtual size of the active image on O(backend=nfs)); V(null) when unknown.
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
      description:
        - What only this backend has; the notes list its keys for each backend.
        - C(reason), when present, explains the status.
      type: dict
      returned: success
      sample: {"directory": "/srv/volumes", "base_file": "volume-db01-data", "active_file": "volume-db01-data",
               "format": "raw", "active_format": "raw", "files": ["volume-db01-data"], "info_file": null}
actions:
  description: What the run changed, or would change in check mode, one sentence each.
  returned: always
  type: list
  elements: str
  sample: ["grow volume db01-data from 10737418240 to 21474836480 bytes"]
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.stratum.storage.plugins.module_utils._argspec import volume_kwargs
from ansible_collections.stratum.storage.plugins.module_utils._manager import run_module


def main():
    run_module(AnsibleModule(**volume_kwargs()), 'volume')


if __name__ == '__main__':
    main()
