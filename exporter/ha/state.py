"""The hibernation state shared by the replicas: in the Lease's annotation, or in a file beside
the lock file."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx
from lightkube import ApiError, Client, KubeConfig
from lightkube.resources.coordination_v1 import Lease

from exporter.ha.election import SERVICE_ACCOUNT_DIR, Elector, _as_dict, _lease

log = logging.getLogger(__name__)


#: The Lease annotation holding the hibernation state (gzip + base64 of the JSON).
STATE_ANNOTATION = "cce-exporter.io/hibernation-state"
#: The API server limits all annotations of an object to 256 KiB together.
ANNOTATION_LIMIT = 256 * 1024


class StateStoreError(Exception):
    """The shared hibernation state could not be read (acting on an empty state could repeat
    actions already taken, so the caller must not act)."""


# --- shared state ---------------------------------------------------------------------------------


def _encode_state(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode("ascii")


def _decode_state(text: str) -> Any:
    return json.loads(gzip.decompress(base64.b64decode(text)))


class LeaseStateStore:
    """The controller's ``StateStore`` in an annotation of the election Lease (see the module
    docstring). Synchronous, like the interface: the controller saves before it calls the API,
    and a short blocking write is what keeps that promise."""

    def __init__(
        self,
        namespace: str,
        name: str,
        *,
        elector: Elector | None = None,
        client: Client | None = None,
        service_account_dir: str | os.PathLike[str] = SERVICE_ACCOUNT_DIR,
        transport: httpx.BaseTransport | None = None,
        annotation: str = STATE_ANNOTATION,
        attempts: int = 3,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.elector = elector
        self.annotation = annotation
        self.attempts = attempts
        self._client = client
        self._service_account_dir = service_account_dir
        self._transport = transport
        self._refused = False

    @property
    def client(self) -> Client:
        if self._client is None:
            config = KubeConfig.from_service_account(self._service_account_dir)
            self._client = Client(
                config,
                namespace=self.namespace,
                timeout=httpx.Timeout(5.0),
                transport=self._transport,
            )
        return self._client

    def load(self) -> Any:
        """The stored state, None when there is none yet; raises :class:`StateStoreError` when
        the Lease cannot be read."""
        try:
            lease = _as_dict(self.client.get(Lease, self.name, namespace=self.namespace))
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise StateStoreError(
                f"cannot read the hibernation state from lease {self.namespace}/{self.name}: "
                f"{exc.status.code} {exc.status.reason or ''}".rstrip()
            ) from None
        except (httpx.HTTPError, OSError) as exc:
            raise StateStoreError(
                f"cannot read the hibernation state from lease {self.namespace}/{self.name}: {exc}"
            ) from None
        text = ((lease.get("metadata") or {}).get("annotations") or {}).get(self.annotation)
        if not text:
            return None
        try:
            return _decode_state(text)
        except (ValueError, OSError) as exc:
            raise StateStoreError(
                f"the hibernation state in lease {self.namespace}/{self.name} is unreadable: {exc}"
            ) from None

    def save(self, value: Any) -> None:
        identity = self.elector.identity if self.elector is not None else None
        if self.elector is not None and not self.elector.is_leader:
            if not self._refused:
                log.warning("hibernation state not written: this replica is not the leader")
            self._refused = True
            return
        self._refused = False
        encoded = _encode_state(value)
        if len(encoded) > ANNOTATION_LIMIT - 4096:
            log.error(
                "hibernation state not written: %d bytes compressed, over the annotation limit",
                len(encoded),
            )
            return
        for _ in range(self.attempts):
            try:
                lease = _as_dict(self.client.get(Lease, self.name, namespace=self.namespace))
                holder = (lease.get("spec") or {}).get("holderIdentity")
                if identity is not None and holder != identity:
                    log.error(
                        "hibernation state not written: lease %s/%s is held by %s",
                        self.namespace,
                        self.name,
                        holder or "nobody",
                    )
                    return
                metadata = dict(lease.get("metadata") or {})
                metadata["annotations"] = {
                    **(metadata.get("annotations") or {}),
                    self.annotation: encoded,
                }
                self.client.replace(_lease({**lease, "metadata": metadata}))
                return
            except ApiError as exc:
                if exc.status.code == 409:
                    continue  # a renewal wrote in between: read again
                log.error("hibernation state not written: %s", exc.status.message or exc)
                return
            except (httpx.HTTPError, OSError) as exc:
                log.error("hibernation state not written: %s", exc)
                return
        log.error("hibernation state not written: %d conflicting writes", self.attempts)


class SharedFileStateStore:
    """The controller's ``StateStore`` as a JSON file shared by replicas on one host."""

    def __init__(self, path: str | os.PathLike[str], *, elector: Elector | None = None) -> None:
        self.path = Path(path)
        self.elector = elector

    def load(self) -> Any:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StateStoreError(f"cannot read the hibernation state {self.path}: {exc}") from None

    def save(self, value: Any) -> None:
        if self.elector is not None and not self.elector.is_leader:
            log.warning("hibernation state not written: this replica is not the leader")
            return
        data = json.dumps(value, indent=1, sort_keys=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            log.error("could not write the hibernation state %s: %s", self.path, exc)
