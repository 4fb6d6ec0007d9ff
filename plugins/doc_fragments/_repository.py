# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r'''
options:
  repository:
    description:
      - The backup repository - a directory of qcow2 volumes in Cinder's NFS layout, one per backed-up volume,
        named after it (C(volume-<volume>)); each backup is a snapshot of that volume. The user guide describes
        the layout.
      - Give exactly one of O(repository.path) and O(repository.share).
      - Reading and writing it needs C(qemu-img) and C(qemu-nbd) (package C(qemu-utils)) on the managed host.
    type: dict
    suboptions:
      path:
        description: A directory that already exists (local, or mounted by other means).
        type: path
      share:
        description:
          - An NFS export, C(host:/export), mounted with C(mount -t nfs) under O(repository.mount_point_base) in a
            directory named by the MD5 hex digest of this string, as the nfs backend mounts a share.
          - Check mode never mounts it.
        type: str
      mount_point_base:
        description: Where shares are mounted.
        type: path
        default: /var/lib/stratum-storage/mnt
      mount_options:
        description: Options passed to C(mount -o) when mounting O(repository.share), for example C(vers=4.2).
        type: str
      file_mode:
        description:
          - The mode, in octal, of the files of a volume the repository gets; later files follow the volume's
            base file, as on the nfs backend.
        type: str
        default: '0600'
'''
