"""The AWS-managed Session Manager documents the sandbox knows (ssm-data-channel.md §5.2).

A session document declares its ``sessionType``, its parameters (type, default, allowed pattern)
and the ``properties`` the agent receives after substitution. StartSession substitutes the caller's
``Parameters`` (lists of strings, one value each for String parameters) and the defaults, and
passes the resulting string properties to the data plane, which hands them to the client in the
handshake. Unknown documents are refused with ``InvalidDocument``; a parameter the document does
not declare, a missing required one or a value outside the allowed pattern with
``ValidationException``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .exceptions import InvalidDocument, ValidationException

_PORT = r"^([1-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
_LOCAL_PORT = (
    r"^([0-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
)
_HOST = r"^[^\s]{1,255}$"


@dataclass(frozen=True)
class Parameter:
    name: str
    default: str | None
    pattern: str
    """None default = required."""


@dataclass(frozen=True)
class SessionDocument:
    name: str
    session_type: str
    parameters: tuple[Parameter, ...]
    fixed_properties: dict[str, str] = field(default_factory=dict)

    def properties(self, supplied: dict[str, list[str]] | None) -> dict[str, str]:
        """Substitute ``supplied`` (StartSession ``Parameters``) and defaults into the properties."""
        supplied = supplied or {}
        declared = {p.name: p for p in self.parameters}
        unknown = sorted(set(supplied) - set(declared))
        if unknown:
            raise ValidationException(
                f"Parameter(s) {', '.join(unknown)} are not defined in the document {self.name}."
            )
        out = dict(self.fixed_properties)
        for param in self.parameters:
            values = supplied.get(param.name)
            if values is None or values == []:
                if param.default is None:
                    raise ValidationException(
                        f"Parameter {param.name} is required by the document {self.name}."
                    )
                value = param.default
            else:
                if len(values) != 1:
                    raise ValidationException(f"Parameter {param.name} takes exactly one value.")
                value = values[0]
            if not re.match(param.pattern, value):
                raise ValidationException(
                    f'Parameter "{param.name}" value "{value}" does not match '
                    f"the allowed pattern {param.pattern}."
                )
            out[param.name] = value
        return out


DOCUMENTS: dict[str, SessionDocument] = {
    doc.name: doc
    for doc in (
        SessionDocument("AWS-StartSSHSession", "Port", (Parameter("portNumber", "22", _PORT),)),
        SessionDocument(
            "AWS-StartPortForwardingSession",
            "Port",
            (Parameter("portNumber", "80", _PORT), Parameter("localPortNumber", "0", _LOCAL_PORT)),
            {"type": "LocalPortForwarding"},
        ),
        SessionDocument(
            "AWS-StartPortForwardingSessionToRemoteHost",
            "Port",
            (
                Parameter("host", None, _HOST),
                Parameter("portNumber", "80", _PORT),
                Parameter("localPortNumber", "0", _LOCAL_PORT),
            ),
            {"type": "LocalPortForwarding"},
        ),
        SessionDocument("SSM-SessionManagerRunShell", "Standard_Stream", ()),
    )
}

DEFAULT_DOCUMENT = "SSM-SessionManagerRunShell"


def resolve(name: str | None, region: str) -> SessionDocument:
    """The document named ``name`` (a name or an ``arn:...:document/<name>`` ARN)."""
    if name is None:
        return DOCUMENTS[DEFAULT_DOCUMENT]
    short = name.split(":document/", 1)[1] if name.startswith("arn:") and ":document/" in name else name
    doc = DOCUMENTS.get(short)
    if doc is None:
        raise InvalidDocument(f"Document {name} does not exist in region {region}.")
    return doc


def document_arn(doc: SessionDocument, region: str) -> str:
    """AWS-owned documents have no account in their ARN."""
    return f"arn:aws:ssm:{region}::document/{doc.name}"
