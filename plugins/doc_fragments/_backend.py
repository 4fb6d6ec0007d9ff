# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The backend selection every module shares.

The ``backend`` choices are the names in the backend registry
(``module_utils/_registry.py``), and every module lists each backend's own
fragment ``_<name>`` after this one; tests/unit/plugins/module_utils/test_registry.py
holds the registry, these choices, those lists and the argument spec equal.
ansible-test reads doc fragments as literal YAML, so neither can be built from the
registry.
"""

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r'''
options:
  backend:
    description:
      - Which storage backend holds the volumes.
      - The dict option of the same name configures it.
      - Set it once for a play with C(module_defaults) on the action group C(group/stratum.storage.storage).
    type: str
    required: true
    choices: [lvm, nfs, zfs]
attributes:
  action_group:
    description: Use C(group/stratum.storage.storage) in C(module_defaults) to set the backend once for all modules.
    support: full
    membership:
      - stratum.storage.storage
  idempotent:
    description: A second run with the same arguments reports no change and issues read commands only.
    support: full
'''

    CHANGES = r'''
options: {}
attributes:
  check_mode:
    description:
      - The change is planned from the current state before anything is applied, so check mode reports exactly
        what a real run would do. It runs read commands only.
      - An NFS O(nfs.share) that is not mounted yet is not mounted in check mode; the module then fails with a
        message that says so.
    support: full
  diff_mode:
    description: Returns the resource before and after the change in the uniform return schema.
    support: full
'''

    INFO = r'''
options: {}
attributes:
  check_mode:
    description: This module never changes anything and runs the same in check mode.
    support: full
  diff_mode:
    description: This module never changes anything, so it has no diff.
    support: N/A
notes:
  - An NFS O(nfs.share) must already be mounted (the M(stratum.storage.volume) and M(stratum.storage.snapshot)
    modules mount it); this module never mounts anything.
'''
