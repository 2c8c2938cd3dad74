"""Identity-based IAM policy evaluation, enough for least-privilege tests (issue #8).

Model: each principal (IAM user name or role session name) may have a list of policy documents.
A principal with **no** policy set is allowed everything (the sandbox default, so tests that do
not care about IAM need no setup). A principal with policies is evaluated like AWS does for
identity policies alone (no SCPs, no resource policies, no permission boundaries, no sessions
policies):

1. an explicit ``Deny`` that matches wins ("... with an explicit deny in an identity-based policy");
2. else an ``Allow`` that matches allows;
3. else implicit deny ("... because no identity-based policy allows the <action> action").

Matched: ``Action``/``NotAction`` (case-insensitive, ``*`` and ``?`` wildcards), ``Resource``/
``NotResource`` (case-sensitive wildcards, with the policy variables ``${aws:username}``,
``${aws:userid}`` and ``${aws:PrincipalAccount}``; as on AWS, ``aws:username`` exists only for IAM
users, so for an assumed role a pattern using it matches nothing), ``Condition`` with the string operators
(``StringEquals``, ``StringNotEquals``, ``StringEqualsIgnoreCase``, ``StringNotEqualsIgnoreCase``,
``StringLike``, ``StringNotLike``, each also with ``IfExists``), ``Bool`` and ``Null``; condition keys
are case-insensitive, several values are ORed, several keys and operators ANDed. Every request
carries the global key ``aws:RequestedRegion`` (the region the request was signed for). Not evaluated:
numeric/date/ARN/IP operators and ``ForAllValues``/``ForAnyValue`` set operators: a statement using
one never matches, and the server log says so, so a test cannot pass by accident.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .services.core import AccessDenied, Caller

log = logging.getLogger("ec2ssm.sandbox.iam")


@dataclass(frozen=True)
class AuthzRequest:
    """One authorization question: may ``caller`` do ``action`` on ``resource`` given ``context``?"""

    caller: Caller
    action: str
    resource: str
    context: Mapping[str, str | list[str]] = field(default_factory=dict)


class PolicyStore:
    """Thread-safe map principal name → policy documents; empty means "allow everything"."""

    def __init__(self, policies: Mapping[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._policies: dict[str, list[dict[str, Any]]] = {}
        for name, docs in (policies or {}).items():
            self.set(name, docs)

    def set(self, principal: str, documents: Any) -> None:
        """Replace the policies of ``principal`` ("*" = every principal without its own)."""
        docs = documents if isinstance(documents, list) else [documents]
        for doc in docs:
            _check_document(doc)
        with self._lock:
            self._policies[principal] = docs

    def clear(self, principal: str | None = None) -> None:
        with self._lock:
            if principal is None:
                self._policies.clear()
            else:
                self._policies.pop(principal, None)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return {k: list(v) for k, v in self._policies.items()}

    def documents_for(self, caller: Caller) -> list[dict[str, Any]] | None:
        with self._lock:
            if caller.name in self._policies:
                return self._policies[caller.name]
            return self._policies.get("*")

    def authorize(self, request: AuthzRequest) -> None:
        """Raise ``AccessDenied`` with AWS's message if the policies do not allow the request."""
        docs = self.documents_for(request.caller)
        if docs is None:
            return
        decision = evaluate(docs, request)
        if decision == "allow":
            return
        why = (
            "with an explicit deny in an identity-based policy"
            if decision == "deny"
            else f"because no identity-based policy allows the {request.action} action"
        )
        raise AccessDenied(
            f"User: {request.caller.arn} is not authorized to perform: {request.action} "
            f"on resource: {request.resource} {why}"
        )


def _check_document(doc: Any) -> None:
    if not isinstance(doc, dict) or not isinstance(doc.get("Statement"), list | dict):
        raise ValueError("a policy document is an object with a Statement list")


def evaluate(documents: Iterable[Mapping[str, Any]], request: AuthzRequest) -> str:
    """Return "deny" (explicit), "allow" or "implicit" for ``request`` under ``documents``."""
    allowed = False
    for doc in documents:
        statements = doc["Statement"]
        for statement in statements if isinstance(statements, list) else [statements]:
            if not _statement_matches(statement, request):
                continue
            if statement.get("Effect") == "Deny":
                return "deny"
            if statement.get("Effect") == "Allow":
                allowed = True
    return "allow" if allowed else "implicit"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _statement_matches(statement: Mapping[str, Any], request: AuthzRequest) -> bool:
    if "Action" in statement:
        if not any(_match_action(p, request.action) for p in _as_list(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(_match_action(p, request.action) for p in _as_list(statement["NotAction"])):
            return False
    else:
        return False
    if "Resource" in statement:
        patterns = [_substitute(p, request.caller) for p in _as_list(statement["Resource"])]
        if not any(p is not None and _match_resource(p, request.resource) for p in patterns):
            return False
    elif "NotResource" in statement:
        patterns = [_substitute(p, request.caller) for p in _as_list(statement["NotResource"])]
        if any(p is None or _match_resource(p, request.resource) for p in patterns):
            return False  # an unresolvable variable: the statement does not apply
    else:
        return False
    return _conditions_match(statement.get("Condition") or {}, request)


def _match_action(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def _match_resource(pattern: str, resource: str) -> bool:
    # IAM wildcards: * and ? only; fnmatch's [..] classes do not exist in IAM.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, resource, flags=re.DOTALL) is not None


def _is_iam_user(caller: Caller) -> bool:
    return ":user/" in caller.arn


def _substitute(pattern: str, caller: Caller) -> str | None:
    """``pattern`` with its policy variables replaced; None when one has no value for ``caller``
    (AWS: a variable it cannot resolve makes the element match nothing)."""
    if "${aws:username}" in pattern and not _is_iam_user(caller):
        return None
    return (
        pattern.replace("${aws:username}", caller.name)
        .replace("${aws:userid}", caller.user_id)
        .replace("${aws:PrincipalAccount}", caller.account_id)
    )


_STRING_OPS: dict[str, Callable[[str, str], bool]] = {
    "stringequals": lambda want, have: want == have,
    "stringnotequals": lambda want, have: want != have,
    "stringequalsignorecase": lambda want, have: want.lower() == have.lower(),
    "stringnotequalsignorecase": lambda want, have: want.lower() != have.lower(),
    "stringlike": _match_resource,
    "stringnotlike": lambda want, have: not _match_resource(want, have),
}
_NEGATED = {"stringnotequals", "stringnotequalsignorecase", "stringnotlike"}


def _context_value(request: AuthzRequest, key: str) -> list[str] | None:
    lowered = key.lower()
    for name, value in request.context.items():
        if name.lower() == lowered:
            return [str(v) for v in _as_list(value)]
    if lowered == "aws:username":
        return [request.caller.name] if _is_iam_user(request.caller) else None
    if lowered == "aws:userid":
        return [request.caller.user_id]
    if lowered == "aws:principalarn":
        return [request.caller.arn]
    if lowered == "aws:principalaccount":
        return [request.caller.account_id]
    return None


def _conditions_match(conditions: Mapping[str, Any], request: AuthzRequest) -> bool:
    for operator, clauses in conditions.items():
        op = operator.lower()
        if_exists = op.endswith("ifexists")
        if if_exists:
            op = op[: -len("ifexists")]
        for key, wanted in clauses.items():
            have = _context_value(request, key)
            wants = [str(w) for w in _as_list(wanted)]
            if op == "null":
                is_null = have is None
                if not any((w.lower() == "true") == is_null for w in wants):
                    return False
                continue
            if have is None:
                if if_exists:
                    continue
                return False
            if op == "bool":
                if not any(h.lower() == w.lower() for h in have for w in wants):
                    return False
                continue
            test = _STRING_OPS.get(op)
            if test is None:
                log.warning("IAM condition operator %s is not evaluated by the sandbox; no match", operator)
                return False
            if op in _NEGATED:
                # every context value must differ from every listed value
                if not all(test(w, h) for h in have for w in wants):
                    return False
            elif not any(test(w, h) for h in have for w in wants):
                return False
    return True
