# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The retention filter as a table of cases: items, policy, now, protected -> what is kept and by which rule."""

from __future__ import annotations

import datetime

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.stratum.storage.plugins.filter.retention import FilterModule, retention

NOW = '2026-11-24T12:00:00Z'


def daily(days, hour=3):
    """One item a day at ``hour`` UTC, for ``days`` days back from NOW's day, oldest first."""
    start = datetime.datetime(2026, 11, 24, hour, tzinfo=datetime.timezone.utc)
    return [{'name': 'd%02d' % n, 'created': (start - datetime.timedelta(days=n)).strftime('%Y-%m-%dT%H:%M:%SZ')}
            for n in reversed(range(days))]


def kept(result):
    return dict((entry['name'], entry['rule']) for entry in result if entry['keep'])


CASES = [
    ('empty input', [], {'daily': 7}, {}, {}),
    ('last keeps the newest N', daily(5), {'last': 2}, {}, {'d00': 'last', 'd01': 'last'}),
    ('daily keeps one a day for N days', daily(10), {'daily': 3}, {}, {'d00': 'daily', 'd01': 'daily', 'd02': 'daily'}),
    ('the newest of a day is its representative',
     [{'name': 'early', 'created': '2026-11-24T01:00:00Z'}, {'name': 'late', 'created': '2026-11-24T09:00:00Z'}],
     {'daily': 1}, {}, {'late': 'daily'}),
    ('an item kept by an earlier rule is listed by that rule', daily(3), {'last': 1, 'daily': 2}, {},
     {'d00': 'last', 'd01': 'daily'}),
    ('weekly takes ISO weeks', daily(15), {'weekly': 3}, {},
     # 2026-11-24 is a Tuesday: its week holds d00-d01, the week before d02-d08, the one before d09-d14
     {'d00': 'weekly', 'd02': 'weekly', 'd09': 'weekly'}),
    ('monthly and yearly buckets',
     [{'name': 'a', 'created': '2025-12-31T23:00:00Z'}, {'name': 'b', 'created': '2026-10-05T00:00:00Z'},
      {'name': 'c', 'created': '2026-10-30T00:00:00Z'}, {'name': 'd', 'created': '2026-11-02T00:00:00Z'}],
     {'monthly': 2, 'yearly': 2}, {}, {'d': 'monthly', 'c': 'monthly', 'a': 'yearly'}),
    ('hourly', [{'name': 'h%d' % m, 'created': '2026-11-24T10:%02d:00Z' % m} for m in (0, 30)]
     + [{'name': 'h9', 'created': '2026-11-24T09:59:00Z'}], {'hourly': 2}, {}, {'h30': 'hourly', 'h9': 'hourly'}),
    ('everything protected', daily(4), {'last': 1}, {'protected': ['d00', 'd01', 'd02', 'd03']},
     {'d00': 'protected', 'd01': 'protected', 'd02': 'protected', 'd03': 'protected'}),
    ('protected is kept besides the policy', daily(4), {'last': 1}, {'protected': ['d03']},
     {'d00': 'last', 'd03': 'protected'}),
    ('a held snapshot is kept besides the policy and counted in its bucket',
     [dict(d, details={'holds': 1 if d['name'] == 'd02' else 0}) for d in daily(4)], {'daily': 2}, {},
     {'d00': 'daily', 'd01': 'daily', 'd02': 'held'}),
    ('holds that are not a positive number hold nothing',
     [{'name': 'a', 'created': '2026-11-20T03:00:00Z', 'details': {'holds': True}},
      {'name': 'b', 'created': '2026-11-21T03:00:00Z', 'details': {'holds': '2'}},
      {'name': 'c', 'created': '2026-11-22T03:00:00Z', 'details': None},
      {'name': 'd', 'created': '2026-11-23T03:00:00Z'}], {'last': 1}, {}, {'d': 'last'}),
    ('protected comes before held', [dict(daily(1)[0], details={'holds': 2})], {'last': 1}, {'protected': ['d00']},
     {'d00': 'protected'}),
    ('ties in time are ordered by name',
     [{'name': 'b', 'created': '2026-11-24T03:00:00Z'}, {'name': 'a', 'created': '2026-11-24T03:00:00Z'}],
     {'last': 1}, {}, {'b': 'last'}),
    ('ties give the same answer in any input order',
     [{'name': 'a', 'created': '2026-11-24T03:00:00Z'}, {'name': 'b', 'created': '2026-11-24T03:00:00Z'}],
     {'last': 1}, {}, {'b': 'last'}),
    ('items in the future are kept and not counted',
     [{'name': 'future', 'created': '2026-11-25T00:00:00Z'}] + daily(2), {'last': 1}, {},
     {'future': 'future', 'd00': 'last'}),
    ('times with and without a zone are UTC-comparable',
     [{'name': 'plus2', 'created': '2026-11-24T05:00:00+02:00'},   # 03:00 UTC
      {'name': 'naive', 'created': '2026-11-24T04:00:00'},         # 04:00 UTC
      {'name': 'zulu', 'created': '2026-11-24T02:00:00Z'}], {'last': 1}, {}, {'naive': 'last'}),
    ('a zone moves an item into another day',
     [{'name': 'late', 'created': '2026-11-23T23:30:00-02:00'},   # 2026-11-24T01:30 UTC
      {'name': 'before', 'created': '2026-11-23T22:00:00Z'}], {'daily': 2}, {}, {'late': 'daily', 'before': 'daily'}),
    ('a datetime is taken as it is',
     [{'name': 'dt', 'created': datetime.datetime(2026, 11, 24, 3, tzinfo=datetime.timezone.utc)}],
     {'last': 1}, {}, {'dt': 'last'}),
    ('counts given as text', daily(3), {'last': '1'}, {}, {'d00': 'last'}),
    ('now moves the grid', daily(5), {'daily': 1}, {'now': '2026-11-22T12:00:00Z'},
     {'d02': 'daily', 'd00': 'future', 'd01': 'future'}),
]


@pytest.mark.parametrize('label, items, policy, extra, expected', CASES, ids=[c[0] for c in CASES])
def test_retention(label, items, policy, extra, expected):
    extra = dict(extra)
    result = retention(items, policy, now=extra.pop('now', NOW), **extra)
    assert kept(result) == expected
    assert [entry['name'] for entry in result] == [item['name'] for item in items]  # the input's order
    assert all(entry['rule'] is None for entry in result if not entry['keep'])


BAD = [
    ('a policy that keeps nothing', daily(2), {'daily': 0}, 'keeps nothing'),
    ('an empty policy', daily(2), {}, 'keeps nothing'),
    ('an unknown key', daily(2), {'dayly': 3}, 'unknown policy key dayly'),
    ('a negative count', daily(2), {'daily': -1}, 'policy daily must be a whole number'),
    ('a fractional count', daily(2), {'daily': 1.5}, 'policy daily must be a whole number'),
    ('a boolean count', daily(2), {'last': True}, 'policy last must be a whole number'),
    ('a policy that is not a dict', daily(2), [7], 'the policy must be a dict'),
    ('an item without a name', [{'created': NOW}], {'last': 1}, 'item 0 must be a dict with a name'),
    ('a created that is not a time', [{'name': 'x', 'created': 'yesterday'}], {'last': 1}, "created of x 'yesterday'"),
    ('a missing created', [{'name': 'x'}], {'last': 1}, 'created of x None'),
    ('input that is not a list', 'abc', {'last': 1}, 'the input must be a list'),
]


@pytest.mark.parametrize('label, items, policy, message', BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_one_sentence(label, items, policy, message):
    with pytest.raises(AnsibleFilterError) as error:
        retention(items, policy, now=NOW)
    text = str(error.value)
    assert message in text and text.count('. ') == 0 and text.endswith('.'), text


def test_a_bad_now_is_one_sentence():
    with pytest.raises(AnsibleFilterError, match='now'):
        retention(daily(1), {'last': 1}, now='soon')


def test_the_filter_is_registered():
    assert FilterModule().filters()['retention'] is retention
