# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs on a test host (python3 - < lvm_fill.py SRC DST POOL VOLUMES SNAPSHOTS): many LVs in one metadata write.

Under software emulation one lvcreate costs 0.3 to 0.9 s and grows with the
number of LVs, so 1,000 of them would take over ten minutes. This adds the thin
volumes and thin snapshots to a copy of the volume group's metadata
(vgcfgbackup) instead, tagged as stratum.storage tags its own, for vgcfgrestore
to write in one go. The thin pool's kernel metadata does not know the new thin
devices, so they are never activated: lvs lists them from the LVM metadata,
which is what a listing reads.
"""

from __future__ import annotations

import random
import re
import string
import sys


def lv_id(rng):
    chars = string.ascii_letters + string.digits
    return '-'.join(''.join(rng.choice(chars) for _i in range(n)) for n in (6, 4, 4, 4, 4, 4, 6))


def block(rng, name, tags, pool, transaction, device, origin):
    lines = ['\t\t%s {' % name,
             '\t\t\tid = "%s"' % lv_id(rng),
             '\t\t\tstatus = ["READ", "WRITE", "VISIBLE"]',
             '\t\t\tflags = []',
             '\t\t\ttags = [%s]' % ', '.join('"%s"' % tag for tag in tags),
             '\t\t\tcreation_time = 1795000000',
             '\t\t\tcreation_host = "bench"',
             '\t\t\tsegment_count = 1',
             '',
             '\t\t\tsegment1 {',
             '\t\t\t\tstart_extent = 0',
             '\t\t\t\textent_count = 2',
             '',
             '\t\t\t\ttype = "thin"',
             '\t\t\t\tthin_pool = "%s"' % pool,
             '\t\t\t\ttransaction_id = %d' % transaction,
             '\t\t\t\tdevice_id = %d' % device]
    if origin:
        lines.append('\t\t\t\torigin = "%s"' % origin)
    return '\n'.join(lines + ['\t\t\t}', '\t\t}', '']) + '\n'


def main():
    source, target, pool, volumes, snapshots = sys.argv[1:6]
    text = open(source).read()
    rng = random.Random(15)
    transaction = int(re.search(r'type = "thin-pool"[^}]*?transaction_id = (\d+)', text).group(1))
    device = max([int(d) for d in re.findall(r'device_id = (\d+)', text)] + [0])
    blocks = []
    for v in range(int(volumes)):
        volume = 'p2v%03d' % v
        device += 1
        blocks.append(block(rng, 'volume-' + volume, ['stratum_volume=' + volume,
                                                      'stratum_created=20261101T000000.000000Z'],
                            pool, transaction, device, None))
        for s in range(int(snapshots)):
            device += 1
            blocks.append(block(rng, 'volume-%s.s%02d' % (volume, s),
                                ['stratum_volume=' + volume, 'stratum_snapshot=s%02d' % s,
                                 'stratum_created=20261101T%02d0000.000000Z' % (s + 1)],
                                pool, transaction, device, 'volume-' + volume))
    marker = '\tlogical_volumes {\n'
    if marker not in text:
        raise SystemExit('no logical_volumes section in %s' % source)
    text = text.replace(marker, marker + '\n'.join(blocks), 1)
    text = re.sub(r'(\n\tseqno = )(\d+)', lambda m: m.group(1) + str(int(m.group(2)) + 1), text, count=1)
    with open(target, 'w') as out:
        out.write(text)


if __name__ == '__main__':
    main()
