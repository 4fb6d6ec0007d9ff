# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The demo playbook run as AWX runs a job: ansible-runner on a private data directory.

The project is a copy of playbooks/, the variables come from env/extravars and the
collection from env/envvars - no edit of the playbook and no prompt. The artifacts
(status, rc, job events) must say success.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def test_the_demo_succeeds_under_ansible_runner(tmp_path):
    private = tmp_path / 'private'
    shutil.copytree(os.path.join(ROOT, 'playbooks'), private / 'project')
    (private / 'inventory').mkdir()
    (private / 'inventory' / 'hosts').write_text('localhost ansible_connection=local\n')
    (private / 'env').mkdir()
    (private / 'env' / 'extravars').write_text(yaml.safe_dump({'demo_dir': str(tmp_path / 'demo')}))
    (private / 'env' / 'envvars').write_text(yaml.safe_dump({
        'ANSIBLE_COLLECTIONS_PATH': os.path.join(ROOT, '.build', 'collections'), 'ANSIBLE_NOCOLOR': '1'}))
    environment = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''))
    done = subprocess.run([os.path.join(BIN, 'ansible-runner'), 'run', str(private), '-p', 'demo.yml',
                           '--ident', 'demo'], env=environment, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=900, check=False)
    artifacts = private / 'artifacts' / 'demo'
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (artifacts / 'status').read_text() == 'successful'
    assert (artifacts / 'rc').read_text() == '0'
    events = [json.load(open(path)) for path in sorted(glob.glob(str(artifacts / 'job_events' / '*.json')))]
    kinds = [event['event'] for event in events]
    assert 'runner_on_failed' not in kinds and 'runner_on_unreachable' not in kinds
    stats = [event['event_data'] for event in events if event['event'] == 'playbook_on_stats']
    assert len(stats) == 1 and stats[0]['failures'] == {} and stats[0]['ok']['localhost'] > 100
    checked = [event['event_data']['task'] for event in events if event['event'] == 'runner_on_ok']
    assert 'Check the backups' in checked
    # the backup role ran inside the job: its summary (set_stats) is the job's artifact, as AWX shows it
    summary = stats[0]['artifact_data']['stratum_backup']['localhost']
    assert summary['dry_run'] is False
    assert [(v['volume'], v['result'], v['stored']) for v in summary['volumes']] == [('demo', 'ok', True)]
