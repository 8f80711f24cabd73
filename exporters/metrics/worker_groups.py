"""Worker groups: worker hostnames mapped to a group by patterns (FLEETOPS_EXPORTER_WORKER_GROUPS),
so that autoscaled pods, each with a name of its own, count their tasks in a few series.

A pattern is a Python regular expression matched against the whole hostname label (as
Prometheus' relabelling does: ``fullmatch``); its named group ``group``, else its first capture
group, is the group. A hostname no pattern matches (or whose group is empty) keeps its name.

The hostnames come from the event stream, which anyone who can publish to the broker writes, and
Python's ``re`` has no timeout: a pattern that backtracks badly (``(a+)+$``) would let one
crafted hostname stop the applier. So patterns are limited to the features whose matching time
stays small on a hostname (at most 255 characters): no backreferences, lookarounds or
conditionals, nothing repeated inside a repetition, no alternation inside a repetition, and at
most ``MAX_OPEN_REPEATS`` open-ended repetitions (their number is the degree of the polynomial
worst case). docs/exporter.md, "Worker groups (autoscaling)", gives the measurements.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

# Python 3.11+'s parser of its own regular expressions: the tree the checks below walk.
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parser  # type: ignore[attr-defined]

GROUP_NAME = "group"
MAX_PATTERNS = 32
MAX_PATTERN_CHARS = 512
# Open-ended repetitions (unbounded, or allowing more than this many repeats) in one pattern:
# three of them cost ~0.1 s at worst on a 255-character hostname, four cost seconds.
MAX_OPEN_REPEATS = 3
# And in all the patterns together, as a hostname no pattern matches is tried against them all.
MAX_OPEN_REPEATS_IN_ALL = 6
OPEN_REPEAT_OVER = 16
# Every repetition of variable length (?, *, +, {m,n} with m != n) multiplies the ways the
# engine may split a hostname among them, and a failing match tries them all: 24 "a?" before
# 24 "a" are 2**24 ways, seconds per hostname. The ways a pattern's variable repetitions can
# share MAX_HOSTNAME_CHARS characters are counted (widths_ways) and bounded; three open-ended
# repetitions are C(258, 3) = 2.8 million, the most MAX_OPEN_REPEATS allows.
MAX_WAYS = 3_000_000
MAX_WAYS_IN_ALL = 2 * MAX_WAYS
# Hostnames longer than any a check lets through (events.py: 255) are not matched at all.
MAX_HOSTNAME_CHARS = 255
# Hostnames whose group is remembered: the mapping runs once per hostname, not per event.
CACHE_SIZE = 10_000

_REPEATS = {
    sre_constants.MAX_REPEAT,
    sre_constants.MIN_REPEAT,
    sre_constants.POSSESSIVE_REPEAT,
}
_FORBIDDEN = {
    sre_constants.GROUPREF: "a backreference",
    sre_constants.GROUPREF_EXISTS: "a conditional group",
    sre_constants.ASSERT: "a lookaround",
    sre_constants.ASSERT_NOT: "a lookaround",
}


def parse_patterns(value: object) -> list[str]:
    """The patterns of the setting: a JSON array of strings, else one pattern per line (commas
    and brackets belong to regular expressions, so they separate nothing)."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                decoded = json.loads(text)
            except ValueError:
                decoded = None  # a character class, e.g. [a-z]+-(.*): one pattern
            if isinstance(decoded, list):
                value = decoded
        if isinstance(value, str):
            value = [line.strip() for line in text.splitlines() if line.strip()]
    if not isinstance(value, list | tuple):
        raise ValueError("give a JSON array of regular expressions, or one per line")
    patterns = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"{str(item)[:80]!r} is not a regular expression (a string)")
        patterns.append(item)
    if len(patterns) > MAX_PATTERNS:
        raise ValueError(f"{len(patterns)} patterns: at most {MAX_PATTERNS}")
    open_repeats = sum(_open_repeats(pattern) for pattern in patterns)
    ways = sum(pattern_ways(pattern) for pattern in patterns)
    if ways > MAX_WAYS_IN_ALL:
        raise ValueError(
            f"the patterns' variable repetitions (?, *, +, {{m,n}}) allow {ways:,} ways to split"
            f" a hostname in all: at most {MAX_WAYS_IN_ALL:,}, so that matching stays fast"
        )
    if open_repeats > MAX_OPEN_REPEATS_IN_ALL:
        raise ValueError(
            f"{open_repeats} open-ended repetitions (*, +, {{n,}}) in all the patterns: at most"
            f" {MAX_OPEN_REPEATS_IN_ALL}, so that matching a hostname stays fast"
        )
    return patterns


def _open_repeats(pattern: str) -> int:
    check_pattern(pattern)
    return _check_tree(sre_parser.parse(pattern), "", inside_repeat=False)


def check_pattern(pattern: str) -> re.Pattern[str]:
    """The compiled pattern, or ValueError saying what makes it unfit."""
    shown = repr(pattern[:80])
    if not pattern:
        raise ValueError("an empty worker-group pattern")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"pattern {shown}...: over {MAX_PATTERN_CHARS} characters")
    try:
        compiled = re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ValueError(f"pattern {shown} is not a regular expression: {exc}") from None
    if GROUP_NAME not in compiled.groupindex and compiled.groups == 0:
        raise ValueError(
            f"pattern {shown} has no capture group: name the group's part (?P<group>...)"
            " or put it in parentheses"
        )
    open_repeats = _check_tree(sre_parser.parse(pattern), shown, inside_repeat=False)
    if open_repeats > MAX_OPEN_REPEATS:
        raise ValueError(
            f"pattern {shown} has {open_repeats} open-ended repetitions (*, +, {{n,}}):"
            f" at most {MAX_OPEN_REPEATS}, so that matching a hostname stays fast"
        )
    ways = pattern_ways(pattern)
    if ways > MAX_WAYS:
        raise ValueError(
            f"pattern {shown}'s variable repetitions (?, *, +, {{m,n}}) allow more than"
            f" {MAX_WAYS:,} ways to split a hostname: too slow to match, not allowed"
        )
    return compiled


def pattern_ways(pattern: str) -> int:
    """The ways (capped just over MAX_WAYS) a hostname can be split among the pattern's
    variable repetitions: what a failing match may try."""
    return widths_ways(_widths(sre_parser.parse(pattern), times=1))


def _widths(nodes: Iterable, *, times: int) -> list[int]:
    """How many lengths each variable repetition may take beyond its least, each repeated as
    often as what holds it repeats. Alternatives count all their branches (an overestimate)
    plus the choice among them."""
    widths: list[int] = []
    for op, arg in nodes:
        if len(widths) > MAX_WAYS:
            break
        if op in _REPEATS:
            low, high, body = arg
            top = min(high, MAX_HOSTNAME_CHARS)
            if top != low:
                widths.extend([top - min(low, top)] * times)
            widths.extend(_widths(body, times=min(times * max(top, 1), MAX_WAYS)))
        elif op == sre_constants.BRANCH:
            widths.extend([len(arg[1]) - 1] * times)
            for branch in arg[1]:
                widths.extend(_widths(branch, times=times))
        elif op == sre_constants.SUBPATTERN:
            widths.extend(_widths(arg[-1], times=times))
        elif op == sre_constants.ATOMIC_GROUP:
            widths.extend(_widths(arg, times=times))
    return widths


def widths_ways(widths: Iterable[int], length: int = MAX_HOSTNAME_CHARS) -> int:
    """Tuples (x_i <= widths[i]) whose sum is at most ``length``; stops counting just over
    MAX_WAYS_IN_ALL (adding a width never lowers the count)."""
    ways = [1] + [0] * length  # ways[s]: tuples summing to exactly s
    for width in widths:
        if width <= 0:
            continue
        running, spread = 0, []
        for total, count in enumerate(ways):  # spread[s] = sum(ways[s - width .. s])
            running += count
            if total > width:
                running -= ways[total - width - 1]
            spread.append(running)
        ways = spread
        if sum(ways) > MAX_WAYS_IN_ALL:
            return MAX_WAYS_IN_ALL + 1
    return sum(ways)


def _check_tree(nodes: Iterable, shown: str, *, inside_repeat: bool) -> int:
    """Refuse the features that backtrack without bound; return the open repetitions."""
    open_repeats = 0
    for op, arg in nodes:
        if op in _FORBIDDEN:
            raise ValueError(f"pattern {shown} uses {_FORBIDDEN[op]}, which is not allowed")
        if op in _REPEATS:
            _low, high, body = arg
            repeats = high > 1
            if repeats and inside_repeat:
                raise ValueError(
                    f"pattern {shown} repeats a repetition (like (a+)+), which can take"
                    " exponential time: not allowed"
                )
            if high == sre_constants.MAXREPEAT or high > OPEN_REPEAT_OVER:
                open_repeats += 1
            open_repeats += _check_tree(body, shown, inside_repeat=inside_repeat or repeats)
        elif op == sre_constants.BRANCH:
            if inside_repeat:
                raise ValueError(
                    f"pattern {shown} repeats an alternation (like (a|ab)*), which can take"
                    " exponential time: not allowed"
                )
            for branch in arg[1]:
                open_repeats += _check_tree(branch, shown, inside_repeat=inside_repeat)
        elif op == sre_constants.SUBPATTERN:
            open_repeats += _check_tree(arg[-1], shown, inside_repeat=inside_repeat)
        elif op == sre_constants.ATOMIC_GROUP:
            open_repeats += _check_tree(arg, shown, inside_repeat=inside_repeat)
    return open_repeats


class WorkerGroups:
    """Maps a hostname label to its group, once per hostname (a bounded cache)."""

    __slots__ = ("_cache", "_patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self._patterns = [
            (compiled, GROUP_NAME if GROUP_NAME in compiled.groupindex else 1)
            for compiled in map(check_pattern, patterns)
        ]
        self._cache: dict[str, str] = {}

    def group_of(self, hostname: str) -> str:
        group = self._cache.get(hostname)
        if group is None:
            group = self._map(hostname)
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[hostname] = group
        return group

    def _map(self, hostname: str) -> str:
        if len(hostname) > MAX_HOSTNAME_CHARS:
            return hostname
        for compiled, which in self._patterns:
            match = compiled.fullmatch(hostname)
            if match is not None:
                group = match.group(which)
                if group:
                    return group
        return hostname
