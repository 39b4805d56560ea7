"""Topic permissions: who may join, send to and moderate which topics.

``c.ChannelsApp.permissions`` is a list of rules; the first rule whose
``topic`` pattern matches a topic decides for it::

    [
        {"topic": "announce:*",      "join": "*",        "send": "@teachers"},
        {"topic": "group:{group}:*", "join": "@{group}", "send": "@{group}"},
        {"topic": "user:{user}:*",   "join": "{user}",   "send": "*"},
        {"topic": "*",               "join": "*",        "send": "*", "moderate": "@teachers"},
    ]

A pattern is a topic, optionally ending in ``*`` (any rest, empty included);
``{user}`` and ``{group}`` each match one segment (no ``:``) and bind it. A
principal is ``*`` (anyone), ``@group``, a username, ``{user}`` (the bound
user), ``@{group}`` (members of the bound group), or a list of these. An
action a rule does not name is allowed to nobody; a topic no rule matches is
refused. No rules at all (``None``) allows everything.

Rules are compiled once; :meth:`Permissions.decide` does no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..connection import Identity, groups_of
from ..protocol import is_topic


class Action(str, Enum):
    """What a rule grants: ``join`` (join, history and presence reads), ``send``
    (``message`` frames, REST POST), ``moderate`` (edit or delete anyone's messages)."""

    JOIN = "join"
    SEND = "send"
    MODERATE = "moderate"


class RuleError(ValueError):
    """A rule that cannot be compiled; the message names the rule."""


ANYONE = "*"
_PLACEHOLDERS = ("user", "group")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_KEYS = {"topic", *(action.value for action in Action)}


@dataclass(frozen=True)
class Rule:
    """One compiled rule; ``number`` counts from 1 in the configured list."""

    number: int
    topic: str
    regex: re.Pattern[str]
    #: Principals by action, as configured (``*``, ``@g``, ``name``, ``{user}``, ``@{group}``).
    principals: Mapping[Action, tuple[str, ...]]
    #: What each action was configured as, for error details.
    written: Mapping[Action, str]

    def describe(self, action: Action) -> str:
        """``rule 1: topic 'announce:*', send '@teachers'``."""
        return f"rule {self.number}: topic {self.topic!r}, {action.value} {self.written[action]}"

    def admits(self, identity: Identity, action: Action, bound: Mapping[str, str]) -> bool:
        groups: tuple[str, ...] | None = None
        for principal in self.principals[action]:
            if principal == ANYONE:
                return True
            if principal == "{user}":
                if identity.username == bound["user"]:
                    return True
            elif principal.startswith("@"):
                group = bound["group"] if principal == "@{group}" else principal[1:]
                if groups is None:
                    groups = groups_of(identity)
                if group in groups:
                    return True
            elif identity.username == principal:
                return True
        return False


@dataclass(frozen=True)
class Decision:
    """Whether an action is allowed, and the rule that said so (``None``: no rule matched,
    or there are no rules)."""

    allowed: bool
    rule: Rule | None

    def refusal(self, action: Action, topic: str) -> str:
        """The ``unauthorized`` detail: what was refused and by which rule."""
        why = self.rule.describe(action) if self.rule is not None else "no rule matches it"
        preposition = "to" if action is Action.SEND else "on" if action is Action.MODERATE else ""
        target = f"{preposition} {topic!r}" if preposition else repr(topic)
        return f"not allowed to {action.value} {target} ({why})"


_EVERYONE = Decision(True, None)


class Permissions:
    """The compiled rules (``None``: no rules, everything allowed).

    Raises :class:`RuleError` naming the first bad rule.
    """

    def __init__(self, rules: Iterable[Any] | None = None) -> None:
        self.rules: tuple[Rule, ...] | None = None
        if rules is not None:
            if isinstance(rules, (str, bytes, Mapping)):
                raise RuleError("permissions must be a list of rules")
            self.rules = tuple(_compile(n, rule) for n, rule in enumerate(rules, 1))

    def decide(self, identity: Identity, action: Action, topic: str) -> Decision:
        """Whether ``identity`` may ``action`` ``topic``: the first matching rule decides."""
        if self.rules is None:
            return _EVERYONE
        for rule in self.rules:
            match = rule.regex.fullmatch(topic)
            if match is not None:
                return Decision(rule.admits(identity, action, match.groupdict()), rule)
        return Decision(False, None)

    def refusal(self, identity: Identity, action: Action, topic: str) -> str | None:
        """The ``unauthorized`` detail when ``identity`` may not ``action`` ``topic``;
        ``None`` when it may."""
        decision = self.decide(identity, action, topic)
        return None if decision.allowed else decision.refusal(action, topic)


def _compile(number: int, rule: Any) -> Rule:
    where = f"permissions rule {number}"
    if not isinstance(rule, Mapping):
        raise RuleError(f"{where}: must be a dict with 'topic', not {rule!r}")
    unknown = sorted(str(key) for key in rule if key not in _KEYS)
    if unknown:
        raise RuleError(
            f"{where} ({rule!r}): unknown key(s) {', '.join(map(repr, unknown))}; "
            f"expected 'topic', 'join', 'send', 'moderate'"
        )
    pattern = rule.get("topic")
    if not isinstance(pattern, str):
        raise RuleError(f"{where} ({rule!r}): 'topic' must be a string pattern")
    regex, bound = _pattern(pattern, f"{where} (topic {pattern!r})")
    principals: dict[Action, tuple[str, ...]] = {}
    written: dict[Action, str] = {}
    for action in Action:
        value = rule.get(action.value)
        principals[action] = _principals(
            value, bound, f"{where} (topic {pattern!r}), {action.value!r}"
        )
        written[action] = "nobody" if value is None else repr(value)
    return Rule(number, pattern, regex, principals, written)


def _pattern(pattern: str, where: str) -> tuple[re.Pattern[str], set[str]]:
    body = pattern[:-1] if pattern.endswith("*") else pattern
    literal = _PLACEHOLDER.sub("x", body)
    if "*" in body or not (pattern == "*" or is_topic(literal)):
        raise RuleError(
            f"{where}: a topic, optionally ending in '*', with {{user}} or {{group}} "
            "in place of a segment"
        )
    bound: set[str] = set()
    regex = ""
    last = 0
    for found in _PLACEHOLDER.finditer(body):
        name = found.group(1)
        if name not in _PLACEHOLDERS:
            raise RuleError(f"{where}: unknown placeholder {{{name}}} (use {{user}} or {{group}})")
        if name in bound:
            raise RuleError(f"{where}: {{{name}}} appears twice")
        bound.add(name)
        regex += re.escape(body[last : found.start()]) + f"(?P<{name}>[^:]+)"
        last = found.end()
    regex += re.escape(body[last:]) + (".*" if pattern.endswith("*") else "")
    return re.compile(regex, re.DOTALL), bound


def _principals(value: Any, bound: set[str], where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(p, str) for p in items):
        raise RuleError(f"{where}: a principal or a list of principals, not {value!r}")
    for principal in items:
        if principal in ("", "@"):
            raise RuleError(f"{where}: empty principal")
        if "{" in principal or "}" in principal:
            if principal == "{user}" and "user" in bound:
                continue
            if principal == "@{group}" and "group" in bound:
                continue
            raise RuleError(
                f"{where}: {principal!r} needs its placeholder in the topic pattern "
                "(only {user} and @{group} are principals)"
            )
    return tuple(items)
