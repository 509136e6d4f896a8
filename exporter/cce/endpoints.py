"""The CCE and IAM endpoints the client calls: templated paths and URL helpers.

A templated path (``/api/v3/projects/{project_id}/clusters``) is the only form an endpoint takes
in metrics, logs and errors; :func:`fill` makes the URL path of one call from it.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import quote, urlsplit

import httpx

# Templated paths: the only form an endpoint takes in metrics, logs and errors.
CLUSTERS = "/api/v3/projects/{project_id}/clusters"
CLUSTER = "/api/v3/projects/{project_id}/clusters/{cluster_id}"
HIBERNATE = "/api/v3/projects/{project_id}/clusters/{cluster_id}/operation/hibernate"
AWAKE = "/api/v3/projects/{project_id}/clusters/{cluster_id}/operation/awake"
NODES = "/api/v3/projects/{project_id}/clusters/{cluster_id}/nodes"
NODEPOOLS = "/api/v3/projects/{project_id}/clusters/{cluster_id}/nodepools"
JOB = "/api/v3/projects/{project_id}/jobs/{job_id}"
QUOTAS = "/api/v3/projects/{project_id}/quotas"
ADDONS = "/api/v3/addons"
ADDON_TEMPLATES = "/api/v3/addontemplates"
UPGRADEINFO = "/api/v3/projects/{project_id}/clusters/{cluster_id}/upgradeinfo"
PROJECTS = "/v3/projects"

# A cluster ID becomes a DNS label in the add-on host name; refuse anything that is not one.
_HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _normalize_base(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "https://" + url
    return url


def default_addon_endpoint(endpoint: str) -> str:
    """``https://{cluster_id}.<host of endpoint>``, keeping the endpoint's scheme and port."""
    parts = urlsplit(_normalize_base(endpoint))
    return f"{parts.scheme}://{{cluster_id}}.{parts.netloc}"


def _path(template: str, **ids: str) -> str:
    """Fill a templated path, quoting every ID (default node-pool IDs contain ``#`` and spaces)."""
    return template.format(**{k: quote(v, safe="") for k, v in ids.items()})


@functools.lru_cache(maxsize=8192)
def _parsed_url(url: str) -> httpx.URL:
    """``httpx.URL(url)``, cached: httpx checks every character of a URL in Python, and a cycle
    requests the same node, pool, add-on and job URLs as the one before."""
    return httpx.URL(url)
