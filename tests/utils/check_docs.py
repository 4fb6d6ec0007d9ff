# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check what `ansible-doc --json` renders for the installed collection.

Every module must document check_mode, diff_mode and idempotent attributes,
carry EXAMPLES that parse and use fully qualified names, and document every
key it returns with `returned`, `type` and `sample`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

#: every module file in the checkout's plugins/modules
MODULES = tuple(sorted(p.stem for p in (Path(__file__).resolve().parents[2] / 'plugins' / 'modules').glob('*.py')
                       if not p.name.startswith('_')))
ATTRIBUTES = ('check_mode', 'diff_mode', 'idempotent', 'action_group')


def check_return(module, path, entry, problems):
    for key in ('description', 'type', 'returned'):
        if key not in entry:
            problems.append('%s: return value %s has no %s' % (module, path, key))
    if entry.get('type') not in ('list', 'dict') and 'sample' not in entry:
        problems.append('%s: return value %s has no sample' % (module, path))
    for name, child in (entry.get('contains') or {}).items():
        check_return(module, '%s.%s' % (path, name), child, problems)


def main(doc_json):
    with open(doc_json) as handle:
        docs = json.load(handle)
    problems = []
    for module in MODULES:
        fqcn = 'stratum.storage.%s' % module
        if fqcn not in docs:
            problems.append('%s: ansible-doc rendered nothing' % fqcn)
            continue
        entry = docs[fqcn]
        doc = entry['doc']
        for attribute in ATTRIBUTES:
            if attribute not in (doc.get('attributes') or {}):
                problems.append('%s: attribute %s is not documented' % (module, attribute))
        examples = yaml.safe_load(entry.get('examples') or '') or []
        if not examples:
            problems.append('%s: no EXAMPLES' % module)
        text = entry.get('examples') or ''
        if 'stratum.storage.%s:' % module not in text:
            problems.append('%s: EXAMPLES do not call the module by its FQCN' % module)
        returns = entry.get('return') or {}
        if not returns:
            problems.append('%s: no RETURN' % module)
        for name, value in returns.items():
            check_return(module, name, value, problems)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print('Documentation of %d modules is complete.' % len(MODULES))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
