# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r'''
options:
  lvm:
    description:
      - Configuration of O(backend=lvm) - logical volumes in one LVM volume group.
      - Volume C(V) is the LV C(volume-V); snapshot C(S) of it is the LV C(volume-V.S). Names never contain
        C(.), so neither can collide with another volume or another volume's snapshot.
      - What is listed comes from LV tags (C(stratum_volume), C(stratum_snapshot), C(stratum_created),
        C(stratum_origin), C(stratum_origin_snapshot)), never from names; LVs without them are not listed and never
        changed.
      - Sizes are rounded up to the volume group's extent size before comparing.
      - Requires the LVM tools (C(lvs), C(lvcreate), C(lvextend), C(lvremove), C(lvchange)) on the managed host.
    type: dict
    suboptions:
      vg:
        description: The volume group that holds the volumes.
        type: str
        required: true
      thin_pool:
        description:
          - A thin pool LV in O(lvm.vg). New volumes are thin LVs in it, and their snapshots thin snapshots.
          - Without it, new volumes are thick (linear) LVs and their snapshots COW snapshots.
        type: str
      snapshot_size:
        description:
          - COW space of a snapshot of a thick volume, as bytes, a size string such as C(1G), or a percentage of the
            origin such as C(25%). It is rounded up to the extent size.
          - By default, and for any value of at least the origin's size, a COW snapshot gets the largest size LVM
            can use for that origin, so it never overflows. A smaller one that fills up lists with status
            C(error).
          - Thin snapshots take their space from the thin pool; this option does not apply to them.
        type: raw
notes:
  - On O(backend=lvm) the C(details) of a volume are C(lv) (C(vg/lv)), C(path) (the block device), C(uuid),
    C(active), C(type) (C(thick) or C(thin)), C(thin_pool) and C(format) (always C(raw)); those of a snapshot are
    C(lv), C(path), C(uuid), C(active), C(type) (C(cow) or C(thin)), C(usage_percent), C(cow_size) for a COW
    snapshot, C(temporary), C(holds) (the number of replicas that hold it, see M(stratum.storage.replica)), and
    C(reason) when the status is V(error) or V(pending_delete).
'''
