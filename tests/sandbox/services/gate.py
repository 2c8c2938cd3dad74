"""The checks AWS's front door makes before an operation runs: IAM, then the rate limit.

Backends call ``gate.check(ctx, action, resources, context)`` once they know the resource ARNs
(which may need a lookup, e.g. the instance's region and tags for ``ec2:ResourceTag``). Every
resource must be allowed (StartSession checks the instance *and* the document, as AWS does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..iam import AuthzRequest, PolicyStore
from ..throttling import Throttler
from .core import RequestContext, Throttling


@dataclass
class Gate:
    policies: PolicyStore
    throttler: Throttler

    def check(
        self,
        ctx: RequestContext,
        action: str,
        resources: list[str],
        context: Mapping[str, str | list[str]] | None = None,
    ) -> None:
        """Raise AccessDenied (first denied resource) or Throttling; else return."""
        request_context = {"aws:RequestedRegion": ctx.region, **(context or {})}
        for resource in resources:
            self.policies.authorize(AuthzRequest(ctx.caller, action, resource, request_context))
        if not self.throttler.allow(ctx.caller.account_id, ctx.region, action):
            raise Throttling()
