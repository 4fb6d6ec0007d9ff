#!/usr/bin/python
# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: backup_info
short_description: List the backups in a repository
version_added: 0.2.0
description:
  - Lists the backups of one volume, or of every volume in O(repository), in the uniform schema of
    M(stratum.storage.backup). Never changes anything.
  - Reads the repository's files only; no backend tool runs, so it works on any host that reaches the repository.
  - A backup being written, or left by a run that was cut off, lists with status V(creating).
  - The backend options are accepted and ignored, so that the action group's C(module_defaults) apply.
options:
  volume:
    description: List the backups of this volume only.
    type: str
  repository:
    required: true
  backend:
    description: Accepted for C(module_defaults); not used.
    type: str
    choices: [lvm, nfs, zfs]
attributes:
  action_group:
    description: Use C(group/stratum.storage.storage) in C(module_defaults); the backend options are ignored.
    support: full
    membership:
      - stratum.storage.storage
  idempotent:
    description: It never changes anything.
    support: full
extends_documentation_fragment:
  - stratum.storage._repository
  - stratum.storage._lvm
  - stratum.storage._nfs
  - stratum.storage._zfs
  - stratum.storage._backend.INFO
seealso:
  - module: stratum.storage.backup
author:
  - stratum.storage maintainers (@stratum-storage)
'''

EXAMPLES = r'''
- name: List the backups of one volume
  stratum.storage.backup_info:
    repository:
      path: /srv/backups
    volume: db01-data
  register: found

- name: Show the newest complete one
  ansible.builtin.debug:
    msg: "{{ (found.backups | selectattr('status', 'eq', 'available') | list | last).name }}"
'''

RETURN = r'''
backups:
  description: The backups, oldest first for each volume, with the keys that M(stratum.storage.backup) returns.
  returned: always
  type: list
  elements: dict
  sample:
    - name: nightly-2026-11-24
      volume: db01-data
      backend: lvm
      status: available
      size: 10737418240
      created: "2026-11-24T01:10:42Z"
      parent: nightly-2026-11-23
      details: {"method": "changes", "bytes_read": 4194304, "bytes_written": 4194304}
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.stratum.storage.plugins.module_utils._argspec import backup_info_kwargs
from ansible_collections.stratum.storage.plugins.module_utils._manager import run_module


def main():
    run_module(AnsibleModule(**backup_info_kwargs()), 'backup_info')


if __name__ == '__main__':
    main()
