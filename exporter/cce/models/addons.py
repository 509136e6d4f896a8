"""Add-on instances, add-on templates and cluster upgrade information."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from exporter.cce.models.clusters import Cluster
from exporter.cce.models.fields import (
    Bool,
    CaseInsensitive,
    Lenient,
    ObjectMeta,
    Resource,
    Str,
    StrList,
    _nested,
    _objects,
)


class AddonVersion(Lenient):
    version: Str = None
    stable: Bool = None


class AddonSpec(CaseInsensitive):
    cluster_id: Str = Field(None, alias="clusterID")
    version: Str = None
    addon_template_name: Str = Field(None, alias="addonTemplateName")
    addon_template_type: Str = Field(None, alias="addonTemplateType")
    addon_template_labels: StrList = Field(default_factory=list, alias="addonTemplateLabels")
    description: Str = None


class AddonStatus(CaseInsensitive):
    status: Str = None
    reason: Str = None
    message: Str = None
    target_versions: StrList = Field(default_factory=list, alias="targetVersions")
    current_version: Annotated[AddonVersion, _nested(AddonVersion)] = Field(
        default_factory=AddonVersion, alias="currentVersion"
    )


class Addon(Resource):
    spec: Annotated[AddonSpec, _nested(AddonSpec)] = Field(default_factory=AddonSpec)
    status: Annotated[AddonStatus, _nested(AddonStatus)] = Field(default_factory=AddonStatus)

    @property
    def name(self) -> str | None:
        """The template name (``coredns``), falling back to the instance name."""
        return self.spec.addon_template_name or self.metadata.name

    @property
    def version(self) -> str | None:
        return self.spec.version or self.status.current_version.version


def _addon_list_metadata(value: object) -> dict[str, Any]:
    # Typed String in Tbl 4-346, an object elsewhere, absent in the example.
    return value if isinstance(value, dict) else {}


class AddonList(Lenient):
    kind: Str = None
    metadata: Annotated[dict[str, Any], BeforeValidator(_addon_list_metadata)] = Field(
        default_factory=dict
    )
    items: Annotated[list[Addon], _objects()] = Field(default_factory=list)


# --- upgrades -----------------------------------------------------------------------------------


class UpgradeVersionInfo(CaseInsensitive):
    """SDK ``UpgradeVersionInfo``: the cluster's release and the versions it can move to."""

    release: Str = None
    patch: Str = None
    suggest_patch: Str = Field(None, alias="suggestPatch")
    target_versions: StrList = Field(default_factory=list, alias="targetVersions")


class UpgradeInfoSpec(Lenient):
    version_info: Annotated[UpgradeVersionInfo, _nested(UpgradeVersionInfo)] = Field(
        default_factory=UpgradeVersionInfo, alias="versionInfo"
    )


class UpgradeInfo(Lenient):
    """``GET .../clusters/{id}/upgradeinfo`` (SDK ``ShowClusterUpgradeInfoResponse``)."""

    kind: Str = None
    spec: Annotated[UpgradeInfoSpec, _nested(UpgradeInfoSpec)] = Field(
        default_factory=UpgradeInfoSpec
    )

    @property
    def target_versions(self) -> list[str]:
        return [v for v in self.spec.version_info.target_versions if v.strip()]


class SupportVersion(Lenient):
    """SDK ``SupportVersions``: cluster type and version patterns a template version fits."""

    cluster_type: Str = Field(None, alias="clusterType")
    cluster_version: StrList = Field(default_factory=list, alias="clusterVersion")


class TemplateVersion(Lenient):
    """SDK ``Versions``: one version of an add-on template."""

    version: Str = None
    stable: Bool = None
    support_versions: Annotated[list[SupportVersion], _objects()] = Field(
        default_factory=list, alias="supportVersions"
    )


class AddonTemplateSpec(Lenient):
    type: Str = None
    versions: Annotated[list[TemplateVersion], _objects()] = Field(default_factory=list)


class AddonTemplate(Lenient):
    """SDK ``AddonTemplate`` (``GET /api/v3/addontemplates``)."""

    metadata: Annotated[ObjectMeta, _nested(ObjectMeta)] = Field(default_factory=ObjectMeta)
    spec: Annotated[AddonTemplateSpec, _nested(AddonTemplateSpec)] = Field(
        default_factory=AddonTemplateSpec
    )

    @property
    def name(self) -> str | None:
        return self.metadata.name or self.metadata.uid


class AddonTemplateList(Lenient):
    items: Annotated[list[AddonTemplate], _objects()] = Field(default_factory=list)


def version_key(version: str) -> tuple[int, ...]:
    """Numbers of a version (``v1.28.3-r0`` -> (1, 28, 3, 0)), for ordering."""
    return tuple(int(n) for n in re.findall(r"\d+", version)[:8])


_PATTERN_MAX = 128


def _fits(pattern: str, value: str) -> bool:
    """Whether a ``clusterVersion`` pattern (a regular expression such as ``v1.*``) matches."""
    if len(pattern) > _PATTERN_MAX:
        return False
    try:
        return re.fullmatch(pattern, value) is not None
    except re.error:
        return pattern == value


def addon_upgrade_available(
    addon: Addon, cluster: Cluster, templates: dict[str, AddonTemplate]
) -> bool | None:
    """Whether a stable template version newer than the add-on's fits its cluster's type and
    version; None when the template or a version is unknown."""
    template = templates.get(addon.name or "")
    installed = addon.version
    version = cluster.spec.version
    if template is None or not installed or not version:
        return None
    current = version_key(installed)
    for candidate in template.spec.versions:
        if not candidate.version or candidate.stable is False:
            continue
        if version_key(candidate.version) <= current:
            continue
        for support in candidate.support_versions:
            if (
                support.cluster_type
                and cluster.spec.type
                and support.cluster_type != cluster.spec.type
            ):
                continue
            if any(_fits(p, version) for p in support.cluster_version):
                return True
    return False
