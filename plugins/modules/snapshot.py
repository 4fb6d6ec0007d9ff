#!/usr/bin/python
# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: snapshot
short_description: Take and delete snapshots of a volume
version_added: 0.1.0
description:
  - Makes a snapshot of a volume exist, or not exist.
  - Deleting a snapshot keeps the content of every other snapshot and of the live volume unchanged.
  - >-
    On O(backend=nfs) a snapshot is taken as Cinder's NFS driver takes it - a new qcow2 overlay
    C(volume-<volume>.<name>) backed by the active file (by a relative name) becomes the active file, and
    C(volume-<volume>.info) maps the snapshot to it. The snapshot's point-in-time content is that overlay's
    backing file. Deleting it commits the overlay into its backing file, drops it from the info file, rebases
    the next overlay up (if any) onto that file and removes the overlay.
  - On O(backend=nfs) the whole backing chain is validated before anything is written. A backing file that is
    absolute, outside the directory or not named by the layout, a loop, or a qcow2 external data file is
    refused and nothing is modified. A running process that holds the active file (an attached QEMU) makes a
    snapshot fail; one that holds any file of the chain makes a delete fail, before anything is written.
  - While a delete runs, the snapshot lists with status V(pending_delete); an interrupted delete is finished by
    running O(state=absent) again.
  - On O(backend=lvm) a thick volume gets a COW snapshot of O(lvm.snapshot_size) and a thin volume a thin
    snapshot. Both are created active (thin snapshots with the activation skip flag off), so C(details.path)
    is a readable block device. A COW snapshot that overflowed lists with status V(error) and the reason; a snapshot
    merging into its origin lists as V(pending_delete).
  - On O(backend=zfs) a snapshot is C(<parent>/<volume>@<name>). One that clones or holds depend on is deleted with
    C(zfs destroy -d) and lists as V(pending_delete) until ZFS removes it; deleting it again is a no-op.
options:
  volume:
    description: Name of the volume.
    type: str
    required: true
  name:
    description:
      - Name of the snapshot; 1 to 128 letters, digits, C(_) or C(-), starting with a letter or digit.
      - V(info) is reserved on O(backend=nfs).
    type: str
    required: true
  temporary:
    description:
      - Mark the snapshot as one that lives for a short while, for example for the duration of a backup run.
      - The mark is stored with the snapshot (LV tag C(stratum_temporary=yes), ZFS property
        C(stratum:temporary=yes), or the nfs metadata file) and listed as C(details.temporary).
      - On a thick LV without O(lvm.snapshot_size) the COW area of a temporary snapshot is 20% of the origin
        instead of room for a full rewrite; a snapshot that overflows lists with status V(error).
      - It is set when the snapshot is taken; an existing snapshot keeps its mark.
    type: bool
    default: false
  state:
    description: Whether the snapshot exists.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - stratum.storage._backend
  - stratum.storage._backend.CHANGES
  - stratum.storage._lvm
  - stratum.storage._nfs
  - stratum.storage._zfs
seealso:
  - module: stratum.storage.snapshot_info
  - module: stratum.storage.volume
author:
  - stratum.storage maintainers (@stratum-storage)
'''

EXAMPLES = r'''
- name: Take tonight's snapshot of a volume on an NFS share
  stratum.storage.snapshot:
    backend: nfs
    nfs:
      share: nas1:/export/volumes
    volume: db01-data
    name: "nightly-{{ '%Y-%m-%d' | strftime }}"

- name: Delete an old snapshot; every other point in time stays intact
  stratum.storage.snapshot:
    backend: nfs
    nfs:
      path: /srv/volumes
    volume: db01-data
    name: nightly-2026-11-01
    state: absent

- name: Snapshot a thin LV; the snapshot is active and readable at its device path
  stratum.storage.snapshot:
    backend: lvm
    lvm:
      vg: vg0
      thin_pool: pool0
    volume: db01-data
    name: before-upgrade

- name: Delete a zvol snapshot; if a clone depends on it, ZFS removes it when the clone goes
  stratum.storage.snapshot:
    backend: zfs
    zfs:
      parent: tank/volumes
    volume: db01-data
    name: before-upgrade
    state: absent
'''

RETURN = r'''
snapshot:
  description:
    - The snapshot after the change, in the uniform schema shared by every backend. V(null) when it does not exist.
    - In check mode this is the predicted snapshot; values the backend assigns on creation are V(null).
  returned: always
  type: dict
  contains:
    name:
      description: Snapshot name.
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
      description:
        - When the snapshot was taken, ISO 8601 UTC.
        - For a snapshot this collection did not take (for example one Cinder took), the modification time of
          its point-in-time image, which stops changing when the snapshot is taken.
        - On O(backend=zfs) the snapshot's C(creation) property.
      type: str
      returned: success
      sample: "2026-11-21T23:05:07Z"
    parent:
      description: The previous snapshot in the same volume's chain, or V(null) for the oldest.
      type: str
      returned: success
      sample: nightly-2026-11-20
    details:
      description:
        - What only this backend has; the notes list its keys for each backend.
        - C(reason), when present, explains the status.
      type: dict
      returned: success
      sample: {"file": "volume-db01-data.nightly-2026-11-21", "image": "volume-db01-data", "image_format": "raw"}
actions:
  description: What the run changed, or would change in check mode, one sentence each.
  returned: always
  type: list
  elements: str
  sample: ["take snapshot nightly-2026-11-21 of volume db01-data"]
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.stratum.storage.plugins.module_utils._argspec import snapshot_kwargs
from ansible_collections.stratum.storage.plugins.module_utils._manager import run_module


def main():
    run_module(AnsibleModule(**snapshot_kwargs()), 'snapshot')


if __name__ == '__main__':
    main()
