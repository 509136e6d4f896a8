"""Quotas (``GET .../quotas``) and the IAM answers: projects and tokens."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from exporter.cce.models.fields import (
    Bool,
    CaseInsensitive,
    Int,
    Lenient,
    Str,
    Timestamp,
    _nested,
    _objects,
)


class Quota(CaseInsensitive):
    quota_key: Str = Field(None, alias="quotaKey")
    quota_limit: Int = Field(None, alias="quotaLimit")
    used: Int = None
    unit: Str = None
    region_id: Str = Field(None, alias="regionId")
    availability_zone_id: Str = Field(None, alias="availabilityZoneId")


class QuotaList(Lenient):
    quotas: Annotated[list[Quota], _objects()] = Field(default_factory=list)


# --- IAM ----------------------------------------------------------------------------------------


class Project(Lenient):
    id: Str = None
    name: Str = None
    domain_id: Str = None
    enabled: Bool = None


class ProjectList(Lenient):
    projects: Annotated[list[Project], _objects()] = Field(default_factory=list)


class TokenInfo(Lenient):
    expires_at: Timestamp = None
    issued_at: Timestamp = None


class TokenBody(Lenient):
    token: Annotated[TokenInfo, _nested(TokenInfo)] = Field(default_factory=TokenInfo)
