"""The API layer's self-metrics: requests, their latency, retries and IAM token refreshes.

One :class:`ApiMetrics` owns the four families of the metric contract's "exporter self-metrics"
that describe API traffic, registered in the registry it is given (the exporter's private
``CollectorRegistry``, or a fresh one per test)::

    cce_exporter_api_requests_total{endpoint,method,code}       every attempt, retries included
    cce_exporter_api_request_duration_seconds{endpoint,method}  histogram of attempt latency
    cce_exporter_api_retries_total{endpoint,reason}             a retry was scheduled, and why
    cce_exporter_auth_refreshes_total{result}                   credential fetches (IAM tokens,
                                                                temporary credentials)

``endpoint`` is always a templated path (``/api/v3/projects/{project_id}/clusters``): a raw ID
or a query string would make the label unbounded. ``code`` is the HTTP status, or a word when
there was no HTTP answer (``timeout``, ``connection_error``, ``auth_error``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

#: Latency buckets for CCE and IAM calls: most answer in tens of milliseconds, list calls on large
#: projects and IAM token requests take seconds, and the default timeout is 10 s.
DURATION_BUCKETS: tuple[float, ...] = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    """The request self-metrics, registered in ``registry``.

    ``auth_refresh`` has the ``on_refresh`` signature the auth classes expect, so it can be handed
    to them directly.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "cce_exporter_api_requests_total",
            "API calls made to CCE and IAM, one per attempt (retries included), by templated "
            "endpoint, method and HTTP status code (or timeout / connection_error).",
            ["endpoint", "method", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "cce_exporter_api_request_duration_seconds",
            "Duration of each API call attempt, by templated endpoint and method.",
            ["endpoint", "method"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "cce_exporter_api_retries_total",
            "API call retries, by templated endpoint and reason (HTTP status, timeout, "
            "connection_error).",
            ["endpoint", "reason"],
            registry=registry,
        )
        self.auth_refreshes = Counter(
            "cce_exporter_auth_refreshes_total",
            "Credential fetches (IAM tokens, assume-agency tokens, temporary credentials from the "
            "metadata service), by result (success, failure).",
            ["result"],
            registry=registry,
        )

    def observe(self, endpoint: str, method: str, code: int | str, seconds: float) -> None:
        """Count one attempt and record its duration."""
        method = method.upper()
        self.requests.labels(endpoint=endpoint, method=method, code=str(code)).inc()
        self.duration.labels(endpoint=endpoint, method=method).observe(max(0.0, seconds))

    def retry(self, endpoint: str, reason: int | str) -> None:
        """Count one scheduled retry of a call to ``endpoint``."""
        self.retries.labels(endpoint=endpoint, reason=str(reason)).inc()

    def auth_refresh(self, result: str) -> None:
        """Count one IAM token fetch (``success`` or ``failure``); usable as ``on_refresh``."""
        self.auth_refreshes.labels(result=result).inc()
