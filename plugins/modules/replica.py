#!/usr/bin/python
# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: replica
short_description: Replicate a snapshot of a volume to a peer host, incrementally and resumably
version_added: 0.3.0
description:
  - Makes snapshot O(snapshot) of volume O(volume) exist on a peer host as the same snapshot of a volume there
    (O(target.volume), by default the same name), or makes that replica not exist.
  - >-
    The module runs on the source host and pushes over SSH to the peer, where the replication key may run only
    the receiver that the C(stratum.storage.replication) role installs (C(stratum-receiver)); the data goes from
    host to host and never through the controller. One run starts one receiver command on the peer: its
    C(session) request answers what the target holds and then takes the run's transfer or delete on the same
    channel (a receiver of an earlier release is asked C(info) and then C(receive), each its own command). The
    calls of one run share one SSH connection, whose control socket is in a new directory under C(/tmp) that
    only the user of the task can enter; the connection is stopped and the directory removed when the run ends.
    Should the run be killed, the idle connection ends by itself after a minute and leaves the empty directory
    (C(/tmp/stratum-ssh-*)).
  - >-
    It sends from the newest snapshot that both sides hold with the same identity (the ZFS guid, the LV UUID, the
    nfs snapshot UUID), never a match by name alone. A target volume that does not exist yet receives everything. A target volume that exists without
    such a common snapshot, or that changed since it (a newer snapshot, or data written since), is refused with
    one sentence and nothing on either side changes.
  - >-
    On O(backend=zfs) the stream is C(zfs send) (C(-i) from the base; with O(intermediate) one C(-i) stream for
    each snapshot in between) into C(zfs receive -s -u). The receiver reads the stream's first record and accepts
    only a plain stream of one zvol snapshot with the announced guid, from the announced base, that is not a
    clone; anything else (a package made by C(-R), C(-I) or C(-p), a file system) is refused before ZFS sees it.
    While it arrives the snapshot lists as V(inbound) on the target (C(stratum:status=receiving:<snapshot>:<guid>)
    on the target zvol, or C(inbound:<snapshot>:<guid>) on a zvol the replica creates, which lists as V(inbound)
    too) and cannot be cloned; it lists V(available) once ZFS has made it with that guid (ZFS makes a received
    snapshot only after all of its data arrived), also when the receiver was killed before it dropped the mark.
    Any later change on that zvol (a replica run, the receiver, the volume and snapshot modules) drops such a
    mark first. A transfer
    that was cut resumes from the target's C(receive_resume_token) on the next run. After the transfer the
    source snapshot gets a hold named after the target (C(details.hold)), and the hold moves from the previous
    replicated snapshot, so the last common base cannot be destroyed until a newer one has arrived.
  - >-
    On O(backend=nfs) the qcow2 clusters that changed between the base and O(snapshot) (from the chain's allocation
    maps) travel as a block stream into the target volume's active file (through qemu-nbd), in Cinder's layout;
    then the snapshot is taken there with the source snapshot's UUID as its identity. While the data arrives the
    volume and the snapshot list as V(inbound) (a mark in the volume's C(.stratum.json)); the target reads the
    ranges back and compares their SHA-256 with the source's before the snapshot lists V(available). A cut
    transfer resumes: the target sends the checksums of its clusters first and only the clusters it lacks are
    sent again. The hold is a mark in the source's metadata; a held snapshot cannot be deleted.
  - >-
    On O(backend=lvm) the identity is the source LV's UUID, recorded on the replica as the tag
    C(stratum_identity). From a thin snapshot with a common base, the ranges that C(thin_delta) reports (on a
    reserved metadata snapshot of the pool) travel as a block stream into a thin snapshot of the previous replica
    on the target, named and tagged as the new snapshot (V(inbound) until done), which then replaces the target
    volume; once its data is complete it is marked so, and a receiver killed while it replaces the volume leaves
    the snapshot V(available) and the replacement to the next run. A thick volume is updated in place by block
    checksums - the target sends the SHA-256 of each 64 KiB cluster, and only the clusters that differ are
    sent - and then gets a COW snapshot; the previous replica's COW
    area keeps the older point. A first replica creates the volume (thin when O(target.lvm.thin_pool) is set) and
    writes everything but the zero clusters of a thin one. A cut transfer resumes by the same checksums. A written
    target is found with C(thin_delta) between its newest snapshot and the volume (thin) or by the newest COW
    snapshot's usage (thick). The hold is an LV tag; a held snapshot cannot be deleted.
  - The target backend must be of the same type as the source (O(backend)); another type is refused.
  - A receiver killed after the data of a snapshot was complete but before it dropped its marks (or, on a thin
    pool, made the volume again from the snapshot) leaves that to finish. The next run lists the action
    C(finish what the receive of replica snapshot S left on volume V on ...), also when S itself is there, and
    the receiver finishes it before anything else; the snapshot is matched by its identity.
options:
  volume:
    description: Name of the source volume.
    type: str
    required: true
  snapshot:
    description: Name of the source snapshot to replicate (or whose replica to delete with O(state=absent)).
    type: str
    required: true
  target:
    description: The peer host and where the replica goes on it.
    type: dict
    required: true
    suboptions:
      host:
        description: Host name or address of the peer, as the source host reaches it.
        type: str
        required: true
      port:
        description: SSH port of the peer.
        type: int
        default: 22
      user:
        description: User the replication key logs in as on the peer.
        type: str
        default: root
      key:
        description: Private key of the replication key pair on the source host.
        type: path
      known_hosts:
        description:
          - A known_hosts file that holds the peer's host key. Host keys are always checked; without this option
            the user's own known_hosts file is used.
        type: path
      connect_timeout:
        description: Seconds to wait for the SSH connection.
        type: int
        default: 30
      volume:
        description: Name of the volume on the peer; by default O(volume).
        type: str
      zfs:
        description: The peer's ZFS place for the replica; its receiver must list it.
        type: dict
        suboptions:
          parent:
            description: Parent dataset of the replica zvol on the peer.
            type: str
            required: true
      lvm:
        description: The peer's volume group (and thin pool) for the replica; its receiver must list it.
        type: dict
        suboptions:
          vg:
            description: Volume group on the peer.
            type: str
            required: true
          thin_pool:
            description: Thin pool in that volume group.
            type: str
      nfs:
        description: The peer's volume directory for the replica; its receiver must list it.
        type: dict
        suboptions:
          path:
            description: Directory on the peer.
            type: path
            required: true
  intermediate:
    description: Send the snapshots between the common base and O(snapshot) as well, each as its own stream.
    type: bool
    default: false
  state:
    description:
      - V(present) makes the replica exist; V(absent) deletes the replica snapshot on the peer (with the same rules
        as M(stratum.storage.snapshot)) and releases the source's hold for this peer on O(snapshot).
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - stratum.storage._backend
  - stratum.storage._lvm
  - stratum.storage._nfs
  - stratum.storage._zfs
attributes:
  check_mode:
    description:
      - Check mode reads both sides (the peer through its receiver's read-only C(session) or C(info) request) and
        reports what would be sent, from which base, and which holds would move; nothing is sent or changed.
    support: full
  diff_mode:
    description: Returns the replica snapshot on the peer before and after, in the uniform return schema.
    support: full
seealso:
  - module: stratum.storage.snapshot
  - module: stratum.storage.snapshot_info
author:
  - stratum.storage maintainers (@stratum-storage)
'''

EXAMPLES = r'''
- name: Keep last night's snapshot of a zvol on the other site
  stratum.storage.replica:
    backend: zfs
    zfs:
      parent: tank/volumes
    volume: db01-data
    snapshot: nightly-2026-11-24
    target:
      host: dr1.example.com
      key: /etc/stratum-storage/replication/id_ed25519
      known_hosts: /etc/stratum-storage/replication/known_hosts
      zfs:
        parent: backup/replicas

- name: Delete the replica of an old snapshot on the other site
  stratum.storage.replica:
    backend: zfs
    zfs:
      parent: tank/volumes
    volume: db01-data
    snapshot: nightly-2026-11-01
    state: absent
    target:
      host: dr1.example.com
      key: /etc/stratum-storage/replication/id_ed25519
      known_hosts: /etc/stratum-storage/replication/known_hosts
      zfs:
        parent: backup/replicas
'''

RETURN = r'''
replica:
  description:
    - The snapshot on the peer as its C(stratum.storage.snapshot_info) lists it, after the run (in check mode, as
      predicted). Null after O(state=absent).
  returned: always
  type: dict
  contains:
    name:
      description: Snapshot name.
      type: str
      returned: success
      sample: nightly-2026-11-24
    volume:
      description: Volume name on the peer.
      type: str
      returned: success
      sample: db01-data
    backend:
      description: Backend of the peer.
      type: str
      returned: success
      sample: zfs
    status:
      description: V(available) once it has arrived and is checked; V(inbound) while it arrives.
      type: str
      returned: success
      sample: available
    size:
      description: Size of the volume at the snapshot, in bytes.
      type: int
      returned: success
      sample: 10737418240
    created:
      description: When the snapshot was taken (ZFS keeps the source's creation time), ISO 8601 UTC.
      type: str
      returned: success
      sample: "2026-11-24T01:00:03Z"
    parent:
      description: The snapshot before it on the peer.
      type: str
      returned: success
      sample: nightly-2026-11-23
    details:
      description:
        - The peer backend's details of the snapshot (as M(stratum.storage.snapshot_info) lists them), plus what
          this run did.
        - C(bytes_sent) - bytes of the stream written to the connection by this run (0 when nothing was sent);
          on O(backend=nfs) and O(backend=lvm) the data clusters plus 13 bytes a cluster.
        - C(base) - the common snapshot the changes were sent from; null for a full or resumed transfer.
        - C(resumed) - whether this run resumed a transfer that was cut.
        - C(hold) - the name of the hold that protects the source snapshot for this peer.
      type: dict
      returned: success
      sample: {"dataset": "backup/replicas/db01-data@nightly-2026-11-24", "guid": "9315418274311893713",
               "createtxg": 1812, "used": 0, "referenced": 1073741824, "clones": [], "holds": 0, "temporary": false,
               "bytes_sent": 73400320, "base": "nightly-2026-11-23", "resumed": false,
               "hold": "stratum-replica:dr1.example.com:22:backup/replicas/db01-data"}
replicas:
  description:
    - All snapshots of the volume on the peer after the run (in check mode, as predicted), as
      M(stratum.storage.snapshot_info) lists them there, oldest first; the replica is among them with the peer's
      details only. A role applies retention on the peer from this list and deletes with O(state=absent).
    - In check mode with O(intermediate), the snapshots between the base and O(snapshot) that would arrive are not
      listed.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "nightly-2026-11-23", "volume": "db01-data", "backend": "zfs", "status": "available",
            "size": 10737418240, "created": "2026-11-23T01:00:02Z", "parent": null,
            "details": {"dataset": "backup/replicas/db01-data@nightly-2026-11-23", "guid": "4203848315377126612",
                        "createtxg": 1790, "used": 1048576, "referenced": 1073741824, "clones": [], "holds": 0,
                        "temporary": false}}]
actions:
  description: What the run changed, or would change in check mode, one sentence each.
  returned: always
  type: list
  elements: str
  sample: ["send the changes of snapshot nightly-2026-11-24 of volume db01-data to zfs backup/replicas on
           root@dr1.example.com:22 since snapshot nightly-2026-11-23"]
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.stratum.storage.plugins.module_utils._argspec import replica_kwargs
from ansible_collections.stratum.storage.plugins.module_utils._manager import run_module


def main():
    run_module(AnsibleModule(**replica_kwargs()), 'replica')


if __name__ == '__main__':
    main()
