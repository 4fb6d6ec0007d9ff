# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Print the LVM and ZFS backends' listing columns as Ansible extra vars (JSON).

Read from the source with ``ast``, so nothing of the collection is imported.
"""

from __future__ import annotations

import ast
import json
import os
import sys

UTILS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'plugins', 'module_utils')


def constant(filename, name):
    with open(os.path.join(UTILS, filename), encoding='utf-8') as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == name for t in node.targets):
            return node.value
    raise SystemExit('%s has no %s' % (filename, name))


def main():
    lvs = ast.literal_eval(constant('_lvm.py', 'LVS_FIELDS'))
    zfs_node = constant('_zfs.py', 'COLUMNS')
    names = {'STATUS_PROPERTY': 'stratum:status', 'TEMPORARY_PROPERTY': 'stratum:temporary'}
    zfs = [ast.literal_eval(e) if not isinstance(e, ast.Name) else names[e.id] for e in zfs_node.elts]
    json.dump({'lvs_fields': ','.join(lvs), 'zfs_columns': ','.join(zfs)}, sys.stdout)
    print()


if __name__ == '__main__':
    main()
