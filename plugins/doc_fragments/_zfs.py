# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r'''
options:
  zfs:
    description:
      - Configuration of O(backend=zfs) - zvols directly under one parent dataset.
      - Volume C(V) is the zvol C(<parent>/V) and its snapshot C(S) is C(<parent>/V@S).
      - Deleting a snapshot that a clone or a hold depends on is a deferred destroy (C(zfs destroy -d)); the
        snapshot lists as C(pending_delete) until ZFS removes it, and deleting it again is a no-op. Nothing is ever
        destroyed with C(-r) or C(-R).
      - Requires the ZFS tools (C(zfs)) on the managed host.
    type: dict
    suboptions:
      parent:
        description: The dataset that holds the zvols, for example C(tank/volumes).
        type: str
        required: true
      properties:
        description:
          - ZFS properties of every volume, for example C(compression) set to C(lz4). Values are compared in the form
            C(zfs list -p) prints them (C(16K) is 16384, C(true) is C(on)), so a second run is a no-op.
          - A property that differs is set with C(zfs set). One that ZFS fixes at creation (C(volblocksize),
            C(encryption), C(keyformat), C(pbkdf2iters)) fails with an error instead.
          - C(volblocksize) defaults to C(16K) for new volumes; sizes are rounded up to a volume's
            volblocksize before comparing.
        type: dict
        default: {}
      sparse:
        description: Create new volumes without a reservation (C(zfs create -s)). Existing volumes are not changed.
        type: bool
        default: false
notes:
  - On O(backend=zfs) the C(details) of a volume are C(dataset), C(path) (the C(/dev/zvol) device), C(guid),
    C(volblocksize), C(used), C(referenced), C(sparse), C(format) (always C(raw)) and C(properties) (the values of
    O(zfs.properties) as ZFS reports them); those of a snapshot are C(dataset), C(guid), C(createtxg), C(used),
    C(referenced), C(clones) (datasets cloned from it), C(holds) (the number of user holds) and C(temporary).
'''
