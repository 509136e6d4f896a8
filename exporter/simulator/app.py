"""The simulator's HTTP application: IAM, CCE, the add-on manager and the ``/_sim/`` control API.

A plain ASGI callable rather than a framework router: the hot path (a cached node list) is a regex
match, one signature check and a byte send, and fault injection needs the raw ``receive`` channel
(a hanging request ends when the client goes away). Served by uvicorn (see ``server.py``).

Authentication works as on the real service, on every CCE, add-on and IAM-projects route: an
``SDK-HMAC-SHA256`` signature checked with :func:`exporter.cce.signing.verify` against the
simulator's one AK/SK (the date is checked against real time, since clients sign with their own
clock), or an ``X-Auth-Token`` issued by the simulated IAM and not expired on the *simulator*
clock (advancing the clock 24 hours expires every token). Anything else is a 401 with an
API-gateway body. The project in a CCE path must be the simulator's project (else 403).

Error bodies: ``{"error_code", "error_msg"}`` everywhere except the add-on manager's routes, which
answer ``{"code", "message"}`` with ``error_code``/``error_msg`` beside them (the SDK's
``CceExceptionHandler`` reads no ``code``), and the node list's paging and ``upgradeinfo`` errors,
which answer today's ``{"errorCode", "errorMessage"}``. ``errorStatus`` is honoured on the cluster
list as well as on get (the reference leaves the list open); without it an ``Error`` cluster reads
``Deleting``. The cluster list takes the SDK's ``status``, ``type`` and ``version`` filters; the
node list pages (``limit``, ``marker``, ``pageInfo.nextMarker``).

Control API (JSON, no authentication, never faulted)::

    GET    /_sim/state                              world summary, faults, clock, tokens, requests
    POST   /_sim/clusters                           {"name"?, "phase"?, "nodes"?, "flavor"?}
    DELETE /_sim/clusters/{id}
    POST   /_sim/clusters/{id}/nodes                {"count"?, "phase"?}
    DELETE /_sim/clusters/{id}/nodes/{node_id}
    POST   /_sim/clusters/{id}/fail-next-wakeup     the next awake fails for lack of capacity
    POST   /_sim/phase                              {"kind": cluster|node|nodepool|addon, "id",
                                                     "phase", "cluster_id"?, "reason"?, "message"?,
                                                     "version"? (an add-on's installed version)}
    POST   /_sim/clusters/{id}/status               {"certificate"?: CertificateValid|...Expired,
                                                     "rotation"?: RotationFailed|...|null,
                                                     "agency"?, "lock"?: {"scene", "source"}|null}
    POST   /_sim/clusters/{id}/nodes/{node}/status  {"probe_age_seconds"?: n|null,
                                                     "configuration_up_to_date"?}
    POST   /_sim/clusters/{id}/nodepools/{pool}/conditions  {"conditions": [{"type", "status",
                                                     "reason"}]}
    POST   /_sim/features                           {"upgradeinfo"?, "addontemplates"?,
                                                     "plain_addons"?, "node_page_max"?}
    POST   /_sim/faults                             {"kind", "rate" | "count", "path"? (regex),
                                                     "latency_ms"?, "hang_seconds"?, "retry_after"?,
                                                     "drip_ms"?, "bomb_mb"?, "name_bytes"?}
    DELETE /_sim/faults                             clear every rule and the global rate
    POST   /_sim/clock/advance                      {"seconds"}
    POST   /_sim/tokens/expire                      expire every token issued so far
    POST   /_sim/securitykeys                       {"lifetime_seconds"}: of new temporary keys
    POST   /_sim/securitykeys/expire                expire every temporary AK/SK issued so far

The metadata service (``GET /openstack/latest/securitykey``, no authentication) hands out
temporary AK/SKs with a security token (see :mod:`exporter.simulator.identity`); IAM's
``assume_role`` token method returns a token acting in another account's project, whose
clusters are a world of their own.
"""

from __future__ import annotations

import json
from typing import Any

from exporter.simulator.api import CceApi
from exporter.simulator.faults import (
    ALL_FAULT_KINDS,
)
from exporter.simulator.formats import iam_time
from exporter.simulator.gateway import ControlRoute, Request, Response, _control_json
from exporter.simulator.identity import Credentials
from exporter.simulator.resources import Cluster

__all__ = ["Credentials", "SimulatorApp"]


class SimulatorApp(CceApi):
    """The ASGI application. ``world``, ``faults``, ``tokens`` and ``clock`` are shared state."""

    def _control_routes(self) -> list[ControlRoute]:
        return [
            ("GET", r"/_sim/state", self._c_state),
            ("POST", r"/_sim/clusters", self._c_add_cluster),
            ("DELETE", r"/_sim/clusters/(?P<cluster_id>[^/]+)", self._c_remove_cluster),
            ("POST", r"/_sim/clusters/(?P<cluster_id>[^/]+)/nodes", self._c_add_nodes),
            (
                "DELETE",
                r"/_sim/clusters/(?P<cluster_id>[^/]+)/nodes/(?P<node_id>[^/]+)",
                self._c_remove_node,
            ),
            (
                "POST",
                r"/_sim/clusters/(?P<cluster_id>[^/]+)/fail-next-wakeup",
                self._c_fail_wakeup,
            ),
            ("POST", r"/_sim/phase", self._c_phase),
            ("POST", r"/_sim/clusters/(?P<cluster_id>[^/]+)/status", self._c_cluster_status),
            (
                "POST",
                r"/_sim/clusters/(?P<cluster_id>[^/]+)/nodes/(?P<node_id>[^/]+)/status",
                self._c_node_status,
            ),
            (
                "POST",
                r"/_sim/clusters/(?P<cluster_id>[^/]+)/nodepools/(?P<nodepool_id>[^/]+)/conditions",
                self._c_pool_conditions,
            ),
            ("POST", r"/_sim/features", self._c_features),
            ("POST", r"/_sim/faults", self._c_add_fault),
            ("DELETE", r"/_sim/faults", self._c_clear_faults),
            ("POST", r"/_sim/clock/advance", self._c_advance),
            ("POST", r"/_sim/tokens/expire", self._c_expire_tokens),
            ("POST", r"/_sim/securitykeys", self._c_securitykeys),
            ("POST", r"/_sim/securitykeys/expire", self._c_expire_securitykeys),
        ]

    @staticmethod
    def _json_body(request: Request) -> dict[str, Any]:
        if not request.body.strip():
            return {}
        data = json.loads(request.body)
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        return data

    def state(self) -> dict[str, Any]:
        return {
            "now": iam_time(self.clock.now_ns()),
            "clock_offset_seconds": self.clock.offset_seconds,
            "project_id": self.credentials.project_id,
            "world": self.world.summary(),
            "faults": self.faults.state(),
            "fault_kinds": list(ALL_FAULT_KINDS),
            "tokens": {"issued": self.tokens.issued_total, "active": self.tokens.active()},
            "temporary_credentials": {
                "issued": self.temporary.issued_total,
                "active": self.temporary.active(),
                "lifetime_seconds": self.temporary.lifetime_seconds,
            },
            "auth_kinds": dict(self.auth_kinds),
            "requests": dict(self.requests),
        }

    def _c_state(self, request: Request) -> Response:
        return _control_json(self.state())

    @staticmethod
    def _cluster_ref(cluster: Cluster) -> dict[str, Any]:
        return {"uid": cluster.uid, "name": cluster.name, "nodes": list(cluster.nodes)}

    def _c_add_cluster(self, request: Request) -> Response:
        data = self._json_body(request)
        cluster = self.world.add_cluster(
            name=data.get("name"),
            phase=str(data.get("phase", "Available")),
            nodes=int(data.get("nodes", 0)),
            flavor=data.get("flavor"),
        )
        return _control_json(self._cluster_ref(cluster), 201)

    def _c_remove_cluster(self, request: Request) -> Response:
        self.world.remove_cluster(request.params["cluster_id"])
        return _control_json({"removed": request.params["cluster_id"]})

    def _c_add_nodes(self, request: Request) -> Response:
        data = self._json_body(request)
        nodes = self.world.add_nodes(
            request.params["cluster_id"], int(data.get("count", 1)), phase=data.get("phase")
        )
        return _control_json({"uids": [n.uid for n in nodes]}, 201)

    def _c_remove_node(self, request: Request) -> Response:
        self.world.remove_node(request.params["cluster_id"], request.params["node_id"])
        return _control_json({"removed": request.params["node_id"]})

    def _c_fail_wakeup(self, request: Request) -> Response:
        self.world.fail_next_wakeup(request.params["cluster_id"])
        return _control_json({"fail_next_wakeup": request.params["cluster_id"]})

    def _c_phase(self, request: Request) -> Response:
        data = self._json_body(request)
        self.world.set_phase(
            str(data["kind"]),
            str(data["id"]),
            str(data["phase"]),
            cluster_id=data.get("cluster_id"),
            reason=data.get("reason"),
            message=data.get("message"),
            version=data.get("version"),
        )
        return _control_json({"ok": True})

    def _c_cluster_status(self, request: Request) -> Response:
        data = self._json_body(request)
        lock = data.get("lock", ...)
        if lock is not ... and lock and not isinstance(lock, dict):
            raise ValueError("lock is an object {scene, source} or null")
        self.world.set_cluster_status(
            request.params["cluster_id"],
            certificate=data.get("certificate"),
            rotation=data.get("rotation", ...),
            agency=data.get("agency"),
            lock=(
                ...
                if lock is ...
                else None
                if not lock
                else (str(lock.get("scene", "")), str(lock.get("source", "")))
            ),
        )
        return _control_json({"ok": True})

    def _c_node_status(self, request: Request) -> Response:
        data = self._json_body(request)
        self.world.set_node_status(
            request.params["cluster_id"],
            request.params["node_id"],
            probe_age_seconds=data.get("probe_age_seconds", ...),
            configuration_up_to_date=data.get("configuration_up_to_date"),
        )
        return _control_json({"ok": True})

    def _c_pool_conditions(self, request: Request) -> Response:
        data = self._json_body(request)
        conditions = {
            str(c["type"]): (str(c.get("status", "True")), str(c.get("reason", "")))
            for c in data.get("conditions", [])
        }
        self.world.set_pool_conditions(
            request.params["cluster_id"], request.params["nodepool_id"], conditions
        )
        return _control_json({"ok": True})

    def _c_features(self, request: Request) -> Response:
        data = self._json_body(request)
        for key, value in data.items():
            if key == "node_page_max":
                self.world.node_page_max = max(1, min(2000, int(value)))
            elif key in ("upgradeinfo", "addontemplates", "plain_addons"):
                self.world.features[key] = bool(value)
            else:
                raise ValueError(f"unknown feature {key!r}")
        self.world.invalidate()
        return _control_json({**self.world.features, "node_page_max": self.world.node_page_max})

    def _c_add_fault(self, request: Request) -> Response:
        data = self._json_body(request)
        rule = self.faults.add(
            str(data["kind"]),
            rate=data.get("rate"),
            count=data.get("count"),
            path=data.get("path"),
            latency_ms=data.get("latency_ms"),
            hang_seconds=data.get("hang_seconds"),
            retry_after=data.get("retry_after"),
            drip_ms=data.get("drip_ms"),
            bomb_mb=data.get("bomb_mb"),
            name_bytes=data.get("name_bytes"),
        )
        return _control_json(rule.describe(), 201)

    def _c_clear_faults(self, request: Request) -> Response:
        self.faults.clear()
        self.faults.rate = 0.0
        return _control_json(self.faults.state())

    def _c_advance(self, request: Request) -> Response:
        data = self._json_body(request)
        self.clock.advance(float(data["seconds"]))
        self.world.invalidate()
        return _control_json({"now": iam_time(self.clock.now_ns())})

    def _c_expire_tokens(self, request: Request) -> Response:
        return _control_json({"expired": self.tokens.expire_all()})

    def _c_securitykeys(self, request: Request) -> Response:
        data = self._json_body(request)
        lifetime = float(data["lifetime_seconds"])
        if not lifetime > 0:
            raise ValueError("lifetime_seconds must be positive")
        self.temporary.lifetime_seconds = lifetime
        return _control_json({"lifetime_seconds": lifetime})

    def _c_expire_securitykeys(self, request: Request) -> Response:
        return _control_json({"expired": self.temporary.expire_all()})
