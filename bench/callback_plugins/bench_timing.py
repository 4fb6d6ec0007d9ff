# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writes the wall time of every task and of every loop item as JSON lines (read by bench/run.py and replica.py).

The file is named by the environment variable BENCH_TIMING_FILE. A task's time
runs from its start to its last result; an item's time from the previous
result (or the task's start) to its own. The benchmark plays run on one host,
so the results of a task arrive one after the other.
"""

from __future__ import annotations

DOCUMENTATION = r'''
name: bench_timing
type: aggregate
short_description: Wall time of each task and loop item, as JSON lines
description:
  - Used by C(make bench-hosts) and C(make bench-replica) only; not part of the collection.
requirements:
  - the environment variable BENCH_TIMING_FILE names the output file
'''

import json
import os
import time

from ansible.plugins.callback import CallbackBase


def _summary(result: dict, failed: bool = False) -> dict:
    """What the benchmark checks about a result: the number of records or the size of the output.

    With BENCH_TIMING_KEEP set (bench/replica.py), also a short stdout and the
    ``replica``, ``snapshot`` and ``actions`` that a module returned.
    """
    found = {}
    for key in ('snapshots', 'volumes'):
        if isinstance(result.get(key), list):
            found['records'] = len(result[key])
    if isinstance(result.get('stdout'), str):
        found['stdout_bytes'] = len(result['stdout'])
        if os.environ.get('BENCH_TIMING_KEEP') and len(result['stdout']) <= 4000:
            found['stdout'] = result['stdout']
    if os.environ.get('BENCH_TIMING_KEEP'):
        for key in ('replica', 'snapshot', 'actions'):
            if isinstance(result.get(key), (dict, list)):
                found[key] = result[key]
    if result.get('msg') and (failed or result.get('failed') or result.get('skipped')):
        found['msg'] = str(result['msg'])[:300]
    return found


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'bench_timing'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._path = os.environ.get('BENCH_TIMING_FILE')
        self._task: dict | None = None
        self._last = 0.0

    def _flush(self) -> None:
        if self._task is not None and self._path:
            with open(self._path, 'a') as out:
                out.write(json.dumps(self._task) + '\n')
        self._task = None

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        self._flush()
        now = time.time()
        self._task = {'name': task.get_name(), 'check_mode': bool(task.check_mode), 'start': now, 'seconds': None,
                      'changed': False, 'failed': False, 'items': [], 'summary': {}}
        self._last = now

    def _item(self, result, failed: bool) -> None:
        if self._task is None:
            return
        now = time.time()
        self._task['items'].append({'seconds': now - self._last, 'changed': bool(result._result.get('changed')),
                                    'failed': failed, 'summary': _summary(result._result, failed)})
        self._last = now

    def v2_runner_item_on_ok(self, result) -> None:
        self._item(result, False)

    def v2_runner_item_on_failed(self, result) -> None:
        self._item(result, True)

    def _done(self, result, failed: bool) -> None:
        if self._task is None:
            return
        self._task['seconds'] = time.time() - self._task['start']
        self._task['changed'] = bool(result._result.get('changed'))
        self._task['failed'] = failed
        self._task['summary'] = _summary(result._result, failed)

    def v2_runner_on_ok(self, result) -> None:
        self._done(result, False)

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        self._done(result, True)

    def v2_runner_on_unreachable(self, result) -> None:
        self._done(result, True)

    def v2_playbook_on_stats(self, stats) -> None:
        self._flush()
