# Copyright: stratum.storage contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``retention`` filter: which items a retention policy keeps, and by which rule.

A pure function of its arguments; the documentation is in ``retention.yml``.
"""

from __future__ import annotations

import datetime

from ansible.errors import AnsibleFilterError

#: the grid periods, finest first, and the bucket an item's time (UTC) falls into
PERIODS = (
    ('hourly', lambda t: (t.year, t.month, t.day, t.hour)),
    ('daily', lambda t: (t.year, t.month, t.day)),
    ('weekly', lambda t: tuple(t.isocalendar()[:2])),
    ('monthly', lambda t: (t.year, t.month)),
    ('yearly', lambda t: (t.year,)),
)
POLICY_KEYS = ('last',) + tuple(name for name, _bucket in PERIODS)


def _moment(value, what):
    """``value`` (ISO 8601 text or a datetime) as an aware UTC datetime; no zone means UTC."""
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(('Z', 'z')):
            text = text[:-1] + '+00:00'
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise AnsibleFilterError('retention: %s %r is not an ISO 8601 time such as 2026-11-24T03:00:00Z.'
                                     % (what, value))
    else:
        raise AnsibleFilterError('retention: %s %r is not an ISO 8601 time such as 2026-11-24T03:00:00Z.'
                                 % (what, value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def _policy(policy):
    if not isinstance(policy, dict):
        raise AnsibleFilterError('retention: the policy must be a dict of %s, not %r.'
                                 % (', '.join(POLICY_KEYS), policy))
    unknown = sorted(str(key) for key in policy if key not in POLICY_KEYS)
    if unknown:
        raise AnsibleFilterError('retention: unknown policy key %s; the keys are %s.'
                                 % (', '.join(unknown), ', '.join(POLICY_KEYS)))
    counts = {}
    for key in POLICY_KEYS:
        value = policy.get(key, 0)
        if value is None:
            value = 0
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise AnsibleFilterError('retention: policy %s must be a whole number of 0 or more, not %r.'
                                     % (key, value))
        counts[key] = value
    if not any(counts.values()):
        raise AnsibleFilterError('retention: the policy keeps nothing, so it would prune every item; give at least '
                                 'one of %s a count above 0.' % ', '.join(POLICY_KEYS))
    return counts


def _held(item):
    """Whether a replica holds ``item`` (a snapshot record whose ``details.holds`` is a number above 0)."""
    details = item.get('details')
    holds = details.get('holds') if isinstance(details, dict) else None
    return isinstance(holds, int) and not isinstance(holds, bool) and holds > 0


def retention(items, policy, now=None, protected=None):
    """Return, for each item (in the order given), ``name``, ``created``, ``keep`` and the ``rule`` that kept it.

    ``rule`` is ``protected``, ``held``, ``future``, ``last`` or a grid period, the first
    that keeps the item, or None for an item to prune.
    """
    if not isinstance(items, (list, tuple)):
        raise AnsibleFilterError('retention: the input must be a list of dicts with name and created, not %r.'
                                 % (items,))
    counts = _policy(policy)
    moment_now = _moment(now, 'now') if now is not None else datetime.datetime.now(tz=datetime.timezone.utc)
    protected = set(protected or [])
    placed = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get('name'), str) or not item.get('name'):
            raise AnsibleFilterError('retention: item %d must be a dict with a name and created, not %r.'
                                     % (index, item))
        placed.append((_moment(item.get('created'), 'created of %s' % item['name']), item['name'], index))
    rules = {}
    for moment, name, index in placed:
        if name in protected:
            rules[index] = 'protected'
        elif _held(items[index]):
            rules[index] = 'held'
        elif moment > moment_now:
            rules[index] = 'future'
    # newest first; ties in time are broken by name, so the result never depends on the input order
    ordered = sorted((entry for entry in placed if entry[0] <= moment_now), key=lambda e: (e[0], e[1]), reverse=True)
    for moment, name, index in ordered[:counts['last']]:
        rules.setdefault(index, 'last')
    for period, bucket in PERIODS:
        wanted, seen = counts[period], set()
        for moment, name, index in ordered:
            if len(seen) >= wanted:
                break
            key = bucket(moment)
            if key in seen:
                continue
            seen.add(key)
            rules.setdefault(index, period)
    return [{'name': item['name'], 'created': item.get('created'), 'keep': index in rules, 'rule': rules.get(index)}
            for index, item in enumerate(items)]


class FilterModule:
    def filters(self):
        return {'retention': retention}
