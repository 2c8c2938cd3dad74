"""SSM requests (``X-Amz-Target: AmazonSSM.<Operation>``) → SsmBackend calls. Parsing only."""

from __future__ import annotations

from typing import Any

from ..core import RequestContext
from ..jsonproto import JsonService
from .models import SsmBackend, SsmBackends


def ssm_service(backends: SsmBackends) -> JsonService:
    def backend(ctx: RequestContext) -> SsmBackend:
        return backends[ctx.region]

    def describe_instance_information(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return backend(ctx).describe_instance_information(
            ctx,
            filters=p.get("Filters"),
            filter_list=p.get("InstanceInformationFilterList"),
            max_results=p.get("MaxResults"),
            next_token=p.get("NextToken"),
        )

    def start_session(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return backend(ctx).start_session(
            ctx,
            target=p["Target"],
            document_name=p.get("DocumentName"),
            reason=p.get("Reason"),
            parameters=p.get("Parameters"),
        )

    def resume_session(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return backend(ctx).resume_session(ctx, p["SessionId"])

    def terminate_session(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return backend(ctx).terminate_session(ctx, p["SessionId"])

    def describe_sessions(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return backend(ctx).describe_sessions(
            ctx,
            state=p["State"],
            max_results=p.get("MaxResults"),
            next_token=p.get("NextToken"),
            filters=p.get("Filters"),
        )

    def list_tags_for_resource(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return backend(ctx).list_tags_for_resource(ctx, p["ResourceType"], p["ResourceId"])

    def add_tags_to_resource(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return backend(ctx).add_tags_to_resource(ctx, p["ResourceType"], p["ResourceId"], p["Tags"])

    def remove_tags_from_resource(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return backend(ctx).remove_tags_from_resource(ctx, p["ResourceType"], p["ResourceId"], p["TagKeys"])

    return JsonService(
        service_name="ssm",
        target_prefix="AmazonSSM",
        operations={
            "DescribeInstanceInformation": describe_instance_information,
            "StartSession": start_session,
            "ResumeSession": resume_session,
            "TerminateSession": terminate_session,
            "DescribeSessions": describe_sessions,
            "ListTagsForResource": list_tags_for_resource,
            "AddTagsToResource": add_tags_to_resource,
            "RemoveTagsFromResource": remove_tags_from_resource,
        },
        target_params={
            "StartSession": "Target",
            "ResumeSession": "SessionId",
            "TerminateSession": "SessionId",
            "ListTagsForResource": "ResourceId",
            "AddTagsToResource": "ResourceId",
            "RemoveTagsFromResource": "ResourceId",
        },
    )
