"""The simulated IAM, metadata service, CCE and add-on manager: the API's routes and handlers."""

from __future__ import annotations

import json
import secrets
from typing import Any

from exporter.simulator.clock import NS
from exporter.simulator.formats import SimError, dump_json, iam_time
from exporter.simulator.gateway import (
    _C,
    _JSON,
    _P,
    ApiRoute,
    Gateway,
    Request,
    Response,
    _error,
    _ok,
)


class CceApi(Gateway):
    """The API's handlers (see :mod:`exporter.simulator.app` for what they answer)."""

    def _api_routes(self) -> list[ApiRoute]:
        return [
            # (method, regex, route name, handler, addon-manager error shape)
            ("POST", r"/v3/auth/tokens", "iam_tokens", self._iam_tokens, False),
            ("GET", r"/v3/projects", "iam_projects", self._iam_projects, False),
            ("GET", r"/v3/auth/projects", "iam_auth_projects", self._iam_projects, False),
            ("GET", _P + r"/clusters", "clusters", self._clusters, False),
            ("GET", _C, "cluster", self._cluster, False),
            ("POST", _C + r"/operation/hibernate", "hibernate", self._hibernate, False),
            ("POST", _C + r"/operation/awake", "awake", self._awake, False),
            ("GET", _C + r"/nodes", "nodes", self._nodes, False),
            ("GET", _C + r"/upgradeinfo", "upgradeinfo", self._upgradeinfo, False),
            ("GET", _C + r"/nodes/(?P<node_id>[^/]+)", "node", self._node, False),
            ("GET", _C + r"/nodepools", "nodepools", self._nodepools, False),
            ("GET", _C + r"/nodepools/(?P<nodepool_id>[^/]+)", "nodepool", self._nodepool, False),
            ("GET", _P + r"/jobs/(?P<job_id>[^/]+)", "job", self._job, False),
            ("GET", _P + r"/quotas", "quotas", self._quotas, False),
            ("GET", r"/api/v3/addons", "addons", self._addons, True),
            ("GET", r"/api/v3/addons/(?P<addon_id>[^/]+)", "addon", self._addon, True),
            ("GET", r"/api/v3/addontemplates", "addontemplates", self._addontemplates, True),
            ("GET", r"/openstack/latest/securitykey", "securitykey", self._securitykey, False),
            ("PUT", r"/meta-data/latest/api/token", "metadata_token", self._metadata_token, False),
        ]

    # --- metadata service ---------------------------------------------------------------------

    def _metadata_token(self, request: Request) -> Response:
        token = secrets.token_urlsafe(32)
        self.metadata_sessions.add(token)
        return Response(200, token.encode(), [(b"content-type", b"text/plain")])

    def _securitykey(self, request: Request) -> Response:
        # Like a metadata service that accepts both: no session token, or a valid one.
        session = request.headers.get("x-metadata-token")
        if session is not None and session not in self.metadata_sessions:
            return _error(401, "Metadata.0401", "The metadata token is invalid or expired.")
        self.metadata_with_session += 1 if session else 0
        return _ok(dump_json(self.temporary.issue()))

    # --- IAM --------------------------------------------------------------------------------

    def _iam_tokens(self, request: Request) -> Response:
        creds = self.credentials
        try:
            auth = json.loads(request.body)["auth"]
            identity = auth["identity"]
            if "assume_role" in identity.get("methods", []):
                return self._assume_role(request, auth)
            user = identity["password"]["user"]
            if "password" not in identity.get("methods", []):
                raise KeyError("methods")
        except (ValueError, KeyError, TypeError):
            return _error(400, "IAM.0001", "The request body is invalid")
        domain = user.get("domain") or {}
        if (
            user.get("name") != creds.username
            or not secrets.compare_digest(str(user.get("password", "")), creds.password)
            or (domain.get("name") or domain.get("id")) not in (creds.domain, creds.domain_id)
        ):
            return _error(401, "IAM.0101", "The username or password is wrong.")
        scope = auth.get("scope") or {}
        project = scope.get("project") if isinstance(scope, dict) else None
        project_id: str | None = None
        if isinstance(project, dict):
            wanted_id, wanted_name = project.get("id"), project.get("name")
            if wanted_id == creds.project_id or (
                wanted_id is None and wanted_name == creds.project_name
            ):
                project_id = creds.project_id
            else:
                return _error(401, "IAM.0102", "The project does not exist or is not accessible.")
        token, entry = self.tokens.issue(project_id)
        body: dict[str, Any] = {
            "token": {
                "expires_at": iam_time(entry.expires),
                "issued_at": iam_time(entry.issued),
                "methods": ["password"],
                "user": {
                    "id": creds.user_id,
                    "name": creds.username,
                    "domain": {"id": creds.domain_id, "name": creds.domain},
                },
                "catalog": [],
                "roles": [{"id": "0", "name": "cce_adm"}],
            }
        }
        if project_id is not None:
            body["token"]["project"] = {
                "id": creds.project_id,
                "name": creds.project_name,
                "domain": {"id": creds.domain_id, "name": creds.domain},
            }
        response = _ok(dump_json(body), 201)
        response.headers.append((b"x-subject-token", token.encode()))
        return response

    def _assume_role(self, request: Request, auth: dict[str, Any]) -> Response:
        """IAM's assume-role token: the caller (this account's own credentials) acts as another
        account's agency in one of that account's projects."""
        self._authenticate(request)  # raises for missing or bad credentials
        agency = self.agency
        if agency is None or not agency.matches(auth["identity"].get("assume_role")):
            return _error(403, "IAM.0003", "The agency does not exist or is not delegated to you.")
        project = (auth.get("scope") or {}).get("project") or {}
        if not isinstance(project, dict) or not (
            project.get("id") == agency.project_id
            or (project.get("id") is None and project.get("name") == agency.project_name)
        ):
            return _error(401, "IAM.0102", "The project does not exist or is not accessible.")
        try:
            seconds = int(auth["identity"]["assume_role"].get("duration_seconds", 3600))
        except (TypeError, ValueError):
            return _error(400, "IAM.0001", "The request body is invalid")
        if not 900 <= seconds <= 86400:
            return _error(400, "IAM.0001", "duration_seconds must be between 900 and 86400")
        token, entry = self.tokens.issue(agency.project_id, seconds * NS)
        body = {
            "token": {
                "expires_at": iam_time(entry.expires),
                "issued_at": iam_time(entry.issued),
                "methods": ["assume_role"],
                "project": {
                    "id": agency.project_id,
                    "name": agency.project_name,
                    "domain": {"id": agency.domain_id, "name": agency.domain},
                },
                "assumed_by": {"user": {"name": self.credentials.username}},
                "catalog": [],
                "roles": [{"id": "0", "name": "cce_adm"}],
            }
        }
        response = _ok(dump_json(body), 201)
        response.headers.append((b"x-subject-token", token.encode()))
        return response

    def _iam_projects(self, request: Request) -> Response:
        creds = self.credentials
        projects = [
            {
                "domain_id": creds.domain_id,
                "is_domain": False,
                "parent_id": creds.domain_id,
                "name": creds.project_name,
                "description": "",
                "links": {
                    "next": None,
                    "previous": None,
                    "self": f"/v3/projects/{creds.project_id}",
                },
                "id": creds.project_id,
                "enabled": True,
            }
        ]
        name = request.query.get("name")
        if name is not None:
            projects = [p for p in projects if p["name"] == name]
        links = {"next": None, "previous": None, "self": "/v3/projects"}
        return _ok(dump_json({"projects": projects, "links": links}))

    # --- CCE ----------------------------------------------------------------------------------

    def _clusters(self, request: Request) -> Response:
        return _ok(
            self.world.cluster_list_bytes(
                error_status=bool(request.query.get("errorStatus")),
                detail=request.query.get("detail", "").lower() == "true",
                status=request.query.get("status") or None,
                type=request.query.get("type") or None,
                version=request.query.get("version") or None,
            )
        )

    def _upgradeinfo(self, request: Request) -> Response:
        return _ok(self.world.upgradeinfo_bytes(request.params["cluster_id"]))

    def _cluster(self, request: Request) -> Response:
        return _ok(
            self.world.cluster_bytes(
                request.params["cluster_id"],
                detail=request.query.get("detail", "").lower() == "true",
                error_status=bool(request.query.get("errorStatus")),
            )
        )

    def _hibernate(self, request: Request) -> Response:
        self.world.hibernate(request.params["cluster_id"])
        return Response(200, b"", [_JSON])

    def _awake(self, request: Request) -> Response:
        self.world.awake(request.params["cluster_id"])
        return Response(200, b"", [_JSON])

    def _nodes(self, request: Request) -> Response:
        raw_limit = request.query.get("limit")
        limit: int | None = None
        if raw_limit is not None:
            if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 2000:
                raise SimError(
                    400, "CCE.01400001", "limit must be an integer from 1 to 2000", camel=True
                )
            limit = int(raw_limit)
        return _ok(
            self.world.node_list_bytes(
                request.params["cluster_id"], limit=limit, marker=request.query.get("marker")
            )
        )

    def _node(self, request: Request) -> Response:
        return _ok(self.world.node_bytes(request.params["cluster_id"], request.params["node_id"]))

    def _nodepools(self, request: Request) -> Response:
        show = request.query.get("showDefaultNodePool", "").lower() == "true"
        return _ok(self.world.nodepool_list_bytes(request.params["cluster_id"], show_default=show))

    def _nodepool(self, request: Request) -> Response:
        return _ok(
            self.world.nodepool_bytes(request.params["cluster_id"], request.params["nodepool_id"])
        )

    def _job(self, request: Request) -> Response:
        return _ok(self.world.job_bytes(request.params["job_id"]))

    def _quotas(self, request: Request) -> Response:
        return _ok(self.world.quotas_bytes())

    def _addon_cluster_id(self, request: Request) -> str:
        cluster_id = request.query.get("cluster_id")
        if cluster_id:
            return cluster_id
        # The real service also knows the cluster from the host name: {cluster_id}.<endpoint>.
        prefix = request.headers.get("host", "").split(".", 1)[0]
        if prefix in self.world.clusters:
            return prefix
        raise SimError(400, "SVCSTG.CCE-ADDONMGR.4000003", "Request Body Error", addon=True)

    def _addons(self, request: Request) -> Response:
        cluster_id = self._addon_cluster_id(request)
        on_cluster_host = request.headers.get("host", "").split(".", 1)[0] == cluster_id
        if not on_cluster_host and not self.world.features.get("plain_addons", True):
            # A Stack installation: the add-on manager answers only on {cluster_id}.<host>.
            raise SimError(404, "SVCSTG.CCE-ADDONMGR.4040000", "Not Found", addon=True)
        return _ok(self.world.addon_list_bytes(cluster_id))

    def _addon(self, request: Request) -> Response:
        cluster_id = request.query.get("cluster_id") or None
        return _ok(self.world.addon_bytes(request.params["addon_id"], cluster_id))

    def _addontemplates(self, request: Request) -> Response:
        if not self.world.features.get("addontemplates", True):
            raise SimError(404, "SVCSTG.CCE-ADDONMGR.4040000", "Not Found", addon=True)
        return _ok(self.world.addontemplates_bytes(request.query.get("addon_template_name")))
