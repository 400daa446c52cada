"""Promotion across environments: the order a plan goes through them, and whether a person's
approval lets it into an environment that requires one.

An approval is bound to the exact commit and plan (a digest of the environment, the commit, the
services in their stages and the image each one deploys) and expires: a new commit, a changed
plan or another image needs a new approval.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from pipeline_bot.core.plan import DeployPlan


class Approval(BaseModel):
    """A person's go-ahead for one plan of one commit into one environment."""

    environment: str
    commit_sha: str
    plan_digest: str
    approved_by: str
    approved_at: datetime
    expires_at: datetime


class ApprovalCheck(BaseModel):
    verdict: Literal["approved", "missing", "expired", "other_commit", "other_plan"]
    reason: str


def promotion_order(environments: Sequence[tuple[str, int]]) -> list[str]:
    """Environment names by their `order`, the config's order breaking ties."""
    ranked = sorted(enumerate(environments), key=lambda e: (e[1][1], e[0]))
    return [name for _, (name, _) in ranked]


def plan_digest(
    plan: DeployPlan, environment: str, commit_sha: str, images: Mapping[str, str]
) -> str:
    """What an approval is bound to, as a short hex digest (the same inputs, the same digest)."""
    canonical = json.dumps(
        {
            "environment": environment,
            "commit": commit_sha,
            "stages": plan.stages,
            "images": {name: images.get(name) for stage in plan.stages for name in stage},
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def check_approval(
    approval: Approval | None,
    *,
    environment: str,
    commit_sha: str,
    digest: str,
    now: datetime,
) -> ApprovalCheck:
    """Whether `approval` lets this plan of this commit into `environment` at `now`."""
    if approval is None or approval.environment != environment:
        return ApprovalCheck(
            verdict="missing",
            reason=f"{environment} requires a person's approval of plan {digest} "
            f"for {commit_sha[:12]}",
        )
    if approval.commit_sha != commit_sha:
        return ApprovalCheck(
            verdict="other_commit",
            reason=f"the approval for {environment} is for commit {approval.commit_sha[:12]}, "
            f"not {commit_sha[:12]}: approve this commit",
        )
    if approval.plan_digest != digest:
        return ApprovalCheck(
            verdict="other_plan",
            reason=f"the approval for {environment} is for plan {approval.plan_digest}, and the "
            f"plan is now {digest} (its services or images changed): approve it again",
        )
    if now >= approval.expires_at:
        return ApprovalCheck(
            verdict="expired",
            reason=f"the approval by {approval.approved_by} for {environment} expired at "
            f"{approval.expires_at:%Y-%m-%d %H:%M}Z: approve it again",
        )
    return ApprovalCheck(
        verdict="approved",
        reason=f"approved by {approval.approved_by} until {approval.expires_at:%Y-%m-%d %H:%M}Z",
    )


class EnvironmentStep(BaseModel):
    environment: str
    status: Literal["succeeded", "failed", "planned", "waiting_for_approval", "not_reached"]
    message: str = ""
    plan_id: str | None = None
    plan_digest: str | None = None


class PromotionResult(BaseModel):
    status: Literal["succeeded", "failed", "planned", "waiting_for_approval"]
    message: str
    commit_sha: str
    environments: list[EnvironmentStep] = Field(default_factory=list)
