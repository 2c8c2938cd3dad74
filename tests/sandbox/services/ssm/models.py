"""The SSM backend: managed nodes, Session Manager sessions, tags of hybrid nodes.

One ``SsmBackend`` per region (``SsmBackends`` makes them on first use), sharing the node registry
and session store with the rest of the sandbox. Each operation's docstring says what it validates
and what it does not; responses.py has already checked the input against botocore's model
(types, lengths, patterns, enums) before any of these run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..core import RequestContext
from ..ec2 import Ec2Adapter
from ..gate import Gate
from ..pagination import decode, encode, fingerprint
from . import documents
from .exceptions import (
    DoesNotExistException,
    InvalidFilterKey,
    InvalidInstanceId,
    InvalidInstanceInformationFilterValue,
    InvalidNextToken,
    InvalidResourceId,
    InvalidResourceType,
    TargetNotConnected,
    TooManyTagsError,
    ValidationException,
)
from .nodes import (
    ENUM_VALUES,
    STRING_FILTER_KEYS,
    ManagedNode,
    NodeRegistry,
    Predicate,
    attribute_predicate,
    tag_predicate,
)
from .sessions import (
    ACTIVE_STATUSES,
    HISTORY_STATUSES,
    SessionBroker,
    SessionRecord,
    SessionStore,
    new_session_id,
    status_from_dataplane,
)

log = logging.getLogger("ec2ssm.sandbox.ssm")

DEFAULT_PAGE = 10  # DescribeInstanceInformation's documented default MaxResults
SESSIONS_DEFAULT_PAGE = 20
_TARGET_OK_STATES = ("running",)


class SsmBackend:
    def __init__(
        self,
        *,
        region: str,
        account_id: str,
        nodes: NodeRegistry,
        sessions: SessionStore,
        ec2: Ec2Adapter,
        gate: Gate,
        broker: Callable[[], SessionBroker | None],
    ) -> None:
        self.region = region
        self.account_id = account_id
        self.nodes = nodes
        self.sessions = sessions
        self.ec2 = ec2
        self.gate = gate
        self._broker = broker

    # --- helpers ---------------------------------------------------------------------------------

    def _listable(self, node: ManagedNode) -> bool:
        if node.deregistered:
            return False
        if node.is_hybrid:
            return True
        return self.ec2.state(self.region, node.instance_id) in ("running", "pending")

    def _node_tags(self, node: ManagedNode) -> dict[str, str]:
        return dict(node.tags) if node.is_hybrid else self.ec2.tags(self.region, node.instance_id)

    def _session_arn(self, session_id: str) -> str:
        return f"arn:aws:ssm:{self.region}:{self.account_id}:session/{session_id}"

    def _resource_context(self, node: ManagedNode | None) -> dict[str, str | list[str]]:
        if node is None:
            return {}
        context: dict[str, str | list[str]] = {}
        for key, value in self._node_tags(node).items():
            context[f"ssm:resourceTag/{key}"] = value
            context[f"aws:ResourceTag/{key}"] = value
            context[f"ec2:ResourceTag/{key}"] = value
        return context

    # --- DescribeInstanceInformation ----------------------------------------------------------

    def describe_instance_information(
        self,
        ctx: RequestContext,
        filters: list[dict[str, Any]] | None,
        filter_list: list[dict[str, Any]] | None,
        max_results: int | None,
        next_token: str | None,
    ) -> dict[str, Any]:
        """List managed nodes of this region, MaxResults (5-50, default 10) at a time.

        Validates: Filters and InstanceInformationFilterList not both (ValidationException); filter
        keys (InvalidFilterKey); tag filters (``tag:K``, ``tag-key``) not mixed with other filters
        ("Cannot mix tag or inventory filter with any other filter.", ValidationException, as AWS
        answers); enum filter values (InvalidInstanceInformationFilterValue); InstanceIds that are
        not managed nodes of this account and region (InvalidInstanceId); NextToken (InvalidNextToken).

        Pagination like AWS: non-tag filters select before paging; tag filters are applied to
        each page of MaxResults nodes *after* paging, so a page can be short or even empty while
        NextToken says more may follow (observed on AWS, aws-cli issue #2626). Stopped and
        terminated EC2 instances are not listed. Not emulated: AssociationStatus (no
        associations run, so that filter matches nothing), inventory filters.
        """
        if filters and filter_list:
            raise ValidationException(
                "InstanceInformationFilterList and Filters cannot be used in the same request."
            )
        self.gate.check(ctx, "ssm:DescribeInstanceInformation", ["*"])
        pre: list[Predicate] = []
        post: list[Predicate] = []
        instance_ids: list[str] = []
        for item in filter_list or []:
            key, values = item["key"], item["valueSet"]
            self._check_values(key, values)
            pre.append(attribute_predicate(key, values))
            if key == "InstanceIds":
                instance_ids.extend(values)
        kinds = set()
        for item in filters or []:
            key, values = item["Key"], item["Values"]
            if key == "tag-key" or key.startswith("tag:"):
                if key == "tag:":
                    raise InvalidFilterKey("The filter key tag: is not valid.")
                kinds.add("tag")
                post.append(tag_predicate(key, values))
            elif key in STRING_FILTER_KEYS:
                kinds.add("attribute")
                self._check_values(key, values)
                pre.append(attribute_predicate(key, values))
                if key == "InstanceIds":
                    instance_ids.extend(values)
            else:
                raise InvalidFilterKey(f"The filter key {key} is not valid.")
        if len(kinds) > 1:
            raise ValidationException("Cannot mix tag or inventory filter with any other filter.")
        if instance_ids:
            unknown = [i for i in instance_ids if self.nodes.get(self.region, i) is None]
            if unknown:
                raise InvalidInstanceId(unknown, self.account_id)
        page_size = max_results or DEFAULT_PAGE
        request = fingerprint("dii", filters, filter_list, page_size)
        offset = 0
        if next_token is not None:
            decoded = decode(next_token, request)
            if decoded is None:
                raise InvalidNextToken()
            offset = decoded
        candidates = [
            n for n in self.nodes.in_region(self.region) if self._listable(n) and all(p(n, {}) for p in pre)
        ]
        window = candidates[offset : offset + page_size]
        items = []
        for node in window:
            tags = self._node_tags(node) if post else {}
            if all(p(node, tags) for p in post):
                items.append(node.describe())
        result: dict[str, Any] = {"InstanceInformationList": items}
        if offset + page_size < len(candidates):
            result["NextToken"] = encode(offset + page_size, request)
        return result

    @staticmethod
    def _check_values(key: str, values: list[str]) -> None:
        allowed = ENUM_VALUES.get(key)
        if allowed is None:
            return
        for value in values:
            if value not in allowed:
                raise InvalidInstanceInformationFilterValue(
                    f"{value} is not a valid value for the filter {key}."
                )

    # --- StartSession / ResumeSession / TerminateSession ---------------------------------------------

    def start_session(
        self,
        ctx: RequestContext,
        target: str,
        document_name: str | None,
        reason: str | None,
        parameters: dict[str, list[str]] | None,
    ) -> dict[str, Any]:
        """Start a session to ``target`` with a Session Manager document; return its stream URL.

        Validates, in AWS's order: IAM ``ssm:StartSession`` on the node *and* the document
        (AccessDeniedException naming the first denied resource), the rate limit
        (ThrottlingException), the document (InvalidDocument; default SSM-SessionManagerRunShell),
        its parameters (ValidationException: unknown, missing, one value each, allowed pattern),
        and that the target is a node of this region, running and Online (TargetNotConnected
        otherwise: unknown, other region, stopped, terminated, ConnectionLost). The session id is
        ``<caller name>-<17 hex>``. Not validated: Session Manager preferences (KMS, logging, run
        as), which the sandbox does not have; an API-only node (no sshd) is Online and accepts the
        session, and its port simply refuses the connection, as a node without sshd would.
        """
        node = self.nodes.get(self.region, target)
        resource = (
            node.arn(self.account_id)
            if node
            else f"arn:aws:ec2:{self.region}:{self.account_id}:instance/{target}"
        )
        doc_for_iam = document_name or documents.DEFAULT_DOCUMENT
        try:
            doc = documents.resolve(document_name, self.region)
            doc_arn = documents.document_arn(doc, self.region)
        except Exception:  # noqa: BLE001 - IAM first, then the document error
            doc = None
            doc_arn = f"arn:aws:ssm:{self.region}:{self.account_id}:document/{doc_for_iam}"
        self.gate.check(ctx, "ssm:StartSession", [resource, doc_arn], self._resource_context(node))
        if doc is None:
            doc = documents.resolve(document_name, self.region)  # raises InvalidDocument
        properties = doc.properties(parameters)
        if node is None or not self._listable(node) or node.agent_status != "Online":
            raise TargetNotConnected(target)
        broker = self._broker()
        if broker is None:
            raise ValidationException(
                "The sandbox was started without a data plane; sessions are unavailable."
            )
        session_id = new_session_id(ctx.caller.name)

        def on_end(*_: Any, **__: Any) -> None:
            self.sessions.end(session_id)

        stream_url, token = broker.create_session(
            session_id=session_id,
            target=target,
            document_name=doc.name,
            properties=properties,
            agent_version=node.agent_version,
            on_end=on_end,
        )
        self.sessions.add(
            SessionRecord(
                session_id=session_id,
                target=target,
                region=self.region,
                owner=ctx.caller.arn,
                document_name=doc.name,
                reason=reason,
                stream_url=stream_url,
            )
        )
        return {"SessionId": session_id, "TokenValue": token, "StreamUrl": stream_url}

    def resume_session(self, ctx: RequestContext, session_id: str) -> dict[str, Any]:
        """A fresh token for a session whose websocket dropped.

        Validates: IAM ``ssm:ResumeSession`` on the session ARN, rate limit, that the session was
        started in this region (DoesNotExistException). A terminated session is answered without
        TokenValue, which clients read as "the session timed out" (ssm-data-channel.md §1.1).
        """
        self.gate.check(ctx, "ssm:ResumeSession", [self._session_arn(session_id)])
        record = self.sessions.get(session_id)
        if record is None or record.region != self.region:
            raise DoesNotExistException(f"Session with id {session_id} does not exist.")
        result: dict[str, Any] = {"SessionId": session_id, "StreamUrl": record.stream_url}
        broker = self._broker()
        token = broker.resume_session(session_id) if broker and record.end_date is None else None
        if token:
            result["TokenValue"] = token
        return result

    def terminate_session(self, ctx: RequestContext, session_id: str) -> dict[str, Any]:
        """End a session for good (idempotent: any id is answered with itself, as AWS does).

        Validates: IAM ``ssm:TerminateSession`` on the session ARN, rate limit. The data plane
        sends channel_closed to a connected client.
        """
        self.gate.check(ctx, "ssm:TerminateSession", [self._session_arn(session_id)])
        record = self.sessions.get(session_id)
        if record is not None and record.region == self.region and record.end_date is None:
            broker = self._broker()
            if broker is not None:
                broker.terminate_session(session_id, output="")
            self.sessions.end(session_id)
        return {"SessionId": session_id}

    def end_sessions_for_target(self, target: str, output: str) -> None:
        """The node went away (stop, terminate, agent lost): end its sessions."""
        broker = self._broker()
        if broker is not None:
            broker.end_sessions_for_target(target, output)
        for record in self.sessions.all():
            if record.target == target and record.end_date is None:
                self.sessions.end(record.session_id)

    # --- DescribeSessions ------------------------------------------------------------------------

    def describe_sessions(
        self,
        ctx: RequestContext,
        state: str,
        max_results: int | None,
        next_token: str | None,
        filters: list[dict[str, str]] | None,
    ) -> dict[str, Any]:
        """Sessions of this region, Active (Connecting/Connected/Disconnected/Terminating) or History.

        Validates: IAM ``ssm:DescribeSessions`` ("*"), filter keys (botocore's enum, checked
        before), InvokedAfter/InvokedBefore timestamps (ValidationException), NextToken. Filters
        Target, Owner, Status, SessionId compare exactly. Not emulated: AccessType (always
        Standard), the 30-day history limit.
        """
        import datetime

        self.gate.check(ctx, "ssm:DescribeSessions", ["*"])
        broker = self._broker()
        wanted = ACTIVE_STATUSES if state == "Active" else HISTORY_STATUSES
        records = []
        for record in self.sessions.all():
            if record.region != self.region:
                continue
            if record.end_date is None and broker is not None:
                record.status = status_from_dataplane(broker.session_state(record.session_id), record.status)
            if record.status in wanted:
                records.append(record)
        for item in filters or []:
            key, value = item["key"], item["value"]
            if key in ("InvokedAfter", "InvokedBefore"):
                try:
                    when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
                except ValueError as exc:
                    raise ValidationException(f"Invalid value for filter {key}: {value}") from exc
                if when.tzinfo is None:
                    when = when.replace(tzinfo=datetime.UTC)
                records = [
                    r
                    for r in records
                    if (r.start_date >= when if key == "InvokedAfter" else r.start_date < when)
                ]
            else:
                attr = {
                    "Target": "target",
                    "Owner": "owner",
                    "Status": "status",
                    "SessionId": "session_id",
                }.get(key)
                if attr is None:
                    records = [r for r in records if key == "AccessType" and value == "Standard"]
                else:
                    records = [r for r in records if getattr(r, attr) == value]
        page_size = max_results or SESSIONS_DEFAULT_PAGE
        request = fingerprint("ds", state, filters, page_size)
        offset = 0
        if next_token is not None:
            decoded = decode(next_token, request)
            if decoded is None:
                raise InvalidNextToken()
            offset = decoded
        page = records[offset : offset + page_size]
        result: dict[str, Any] = {"Sessions": [r.describe() for r in page]}
        if offset + page_size < len(records):
            result["NextToken"] = encode(offset + page_size, request)
        return result

    # --- tags of hybrid nodes --------------------------------------------------------------------

    def _tagged_node(self, resource_type: str, resource_id: str) -> ManagedNode:
        if resource_type != "ManagedInstance":
            raise InvalidResourceType(
                f"The sandbox tags only ManagedInstance resources, not {resource_type}."
            )
        node = self.nodes.get(self.region, resource_id)
        if node is None or not node.is_hybrid or node.deregistered:
            raise InvalidResourceId(f"The resource ID {resource_id} isn't valid.")
        return node

    def list_tags_for_resource(
        self, ctx: RequestContext, resource_type: str, resource_id: str
    ) -> dict[str, Any]:
        """Tags of an ``mi-*`` node. Validates IAM (``ssm:ListTagsForResource`` on the node ARN),
        ResourceType (only ManagedInstance: InvalidResourceType) and the id (InvalidResourceId)."""
        node = self._tagged_node(resource_type, resource_id)
        self.gate.check(ctx, "ssm:ListTagsForResource", [node.arn(self.account_id)])
        return {"TagList": [{"Key": k, "Value": v} for k, v in sorted(node.tags.items())]}

    def add_tags_to_resource(
        self, ctx: RequestContext, resource_type: str, resource_id: str, tags: list[dict[str, str]]
    ) -> dict[str, Any]:
        """Add or overwrite tags on an ``mi-*`` node. Validates as ListTagsForResource plus the
        limit of 50 user tags per resource (TooManyTagsError) and reserved ``aws:`` keys
        (InvalidParameters is what AWS uses for those; we answer ValidationException)."""
        node = self._tagged_node(resource_type, resource_id)
        self.gate.check(ctx, "ssm:AddTagsToResource", [node.arn(self.account_id)])
        new = {t["Key"]: t["Value"] for t in tags}
        if any(k.lower().startswith("aws:") for k in new):
            raise ValidationException("Tag keys starting with aws: are reserved.")
        merged = {**node.tags, **new}
        if len(merged) > 50:
            raise TooManyTagsError("The resource has too many tags (the limit is 50).")
        node.tags = merged
        return {}

    def remove_tags_from_resource(
        self, ctx: RequestContext, resource_type: str, resource_id: str, keys: list[str]
    ) -> dict[str, Any]:
        """Remove tags from an ``mi-*`` node (missing keys are ignored, as on AWS)."""
        node = self._tagged_node(resource_type, resource_id)
        self.gate.check(ctx, "ssm:RemoveTagsFromResource", [node.arn(self.account_id)])
        node.tags = {k: v for k, v in node.tags.items() if k not in set(keys)}
        return {}


class SsmBackends:
    """Region → SsmBackend, made on first use (any region name botocore can sign for)."""

    def __init__(self, factory: Callable[[str], SsmBackend]) -> None:
        self._factory = factory
        self._backends: dict[str, SsmBackend] = {}

    def __getitem__(self, region: str) -> SsmBackend:
        backend = self._backends.get(region)
        if backend is None:
            backend = self._backends.setdefault(region, self._factory(region))
        return backend

    def values(self) -> list[SsmBackend]:
        return list(self._backends.values())
