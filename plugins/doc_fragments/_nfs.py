# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r'''
options:
  nfs:
    description:
      - Configuration of O(backend=nfs) - qcow2 and raw image files in one directory, laid out as OpenStack
        Cinder's NFS driver lays them out (C(volume-<name>), C(volume-<name>.<snapshot>), C(volume-<name>.info)).
      - Give exactly one of O(nfs.share) and O(nfs.path).
      - Requires C(qemu-img) on the managed host.
      - Give it only with O(backend=nfs); a dict for a backend other than O(backend) is an error.
    type: dict
    suboptions:
      share:
        description:
          - An NFS export, C(host:/export), mounted with C(mount -t nfs) under O(nfs.mount_point_base) in a
            directory named by the MD5 hex digest of this string, as Cinder names it.
          - A share that is already mounted there is used as it is.
        type: str
      path:
        description:
          - A directory that already exists (local, or mounted by other means) and holds the volumes.
        type: path
      mount_point_base:
        description: Where shares are mounted.
        type: path
        default: /var/lib/stratum-storage/mnt
      mount_options:
        description: Options passed to C(mount -o) when mounting O(nfs.share), for example C(vers=4.2).
        type: str
      file_mode:
        description:
          - The mode, in octal, of the files of a volume this run creates.
          - Every later file of a volume (snapshot overlays, the info file, the metadata and the lock file) gets
            the mode, owner and group of the volume's base file, as Cinder's files do, so that a C(cinder-volume)
            running as another user can still write them.
          - The default is the mode of Cinder's secure mode, which a new Cinder installation uses
            (C(nas_secure_file_permissions=auto)). With Cinder's C(nas_secure_file_permissions=false), which makes
            files C(0666) so that a C(cinder-volume) running as another user can write them, set C(0666).
        type: str
        default: '0660'
      cinder_compatible:
        description:
          - Refuse, before any command, names that Cinder's NFS driver does not accept. Cinder names a volume's
            files C(volume-<UUID>) and C(volume-<UUID>.<snapshot id>), and refuses the whole volume when a backing
            file has a snapshot part other than hex digits and dashes.
          - With C(true), volume names must be UUIDs and snapshot names hex digits and dashes (snapshot UUIDs).
        type: bool
        default: false
notes:
  - On O(backend=nfs) the C(details) of a volume are C(directory), C(base_file), C(active_file), C(format),
    C(active_format), C(files) (the chain from base to active) and C(info_file); those of a snapshot are C(file)
    (the overlay the info file maps the snapshot to), C(image) (its backing file, which holds the point-in-time
    content), C(image_format), C(uuid) (set when the snapshot is taken by this collection; V(null) for one that
    Cinder took), C(temporary) and C(holds) (the number of replicas that hold it, see
    M(stratum.storage.replica)). A record in status V(error) adds C(reason).
'''
