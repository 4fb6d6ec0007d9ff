"""Checks the HTML docsite `make docs` built: a page per module, filter and role, every
RETURN value of every module rendered on its page, and the three guides."""

import json
import os
import sys


def main(html, doc_json):
    base = os.path.join(html, 'collections', 'stratum', 'storage')
    with open(doc_json, encoding='utf-8') as handle:
        docs = json.load(handle)
    problems = []
    for fqcn, doc in sorted(docs.items()):
        name = fqcn.split('.')[-1]
        path = os.path.join(base, '%s_module.html' % name)
        if not os.path.exists(path):
            problems.append('no page for module %s' % fqcn)
            continue
        with open(path, encoding='utf-8') as handle:
            page = handle.read()

        def anchors(returns, prefix):
            for key, value in (returns or {}).items():
                yield prefix + key
                yield from anchors(value.get('contains'), prefix + key + '/')

        for anchor in anchors(doc.get('return'), ''):
            if 'id="return-%s"' % anchor not in page:
                problems.append('module %s: return value %s is not on its page' % (fqcn, anchor))
    for page in ('retention_filter.html', 'backup_role.html', os.path.join('docsite', 'user_guide.html'),
                 os.path.join('docsite', 'testhosts.html'), os.path.join('docsite', 'development.html')):
        if not os.path.exists(os.path.join(base, page)):
            problems.append('no page %s' % page)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print('docsite: %d module pages with every return value, the filter, the role and the guides' % len(docs))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1], sys.argv[2]))
