"""The simulator's temporary credentials and agencies: what an ECS instance's agency and a
cross-account agency look like to the exporter.

* :class:`TemporaryKeys`: the metadata service's ``GET /openstack/latest/securitykey`` answer, a
  temporary AK/SK with a security token valid for ``lifetime`` seconds (simulator clock). A
  request signed with a temporary AK is accepted only if it carries that key's security token as
  ``X-Security-Token`` *and* signs it; an expired key is refused like an expired token.
* :class:`Agency`: an IAM agency in another account (its own domain, project and world); IAM's
  assume-role token request, authenticated with the simulator account's own credentials, returns a
  token acting as the agency in that account's project.
"""

from __future__ import annotations

import random
import secrets
import string
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from exporter.simulator.clock import NS, SimClock
from exporter.simulator.formats import iam_time

#: Default lifetime of the metadata service's temporary credentials (the real service: ~24 h).
DEFAULT_TEMPORARY_SECONDS = 3600.0
#: The agency the other account grants the simulator's account.
AGENCY_NAME = "cce-monitor"


@dataclass
class TemporaryKey:
    secret: str = field(repr=False)
    security_token: str = field(repr=False)
    expires: int


class _Expiring(Protocol):
    expires: int


E = TypeVar("E", bound=_Expiring)


class _Issued(Generic[E]):
    """Credentials handed out, by key, each expiring at an instant of the simulator clock."""

    def __init__(self, clock: SimClock, issued: dict[str, E]) -> None:
        self._clock = clock
        self._issued = issued
        self.issued_total = 0

    def get(self, key: str) -> E | None:
        return self._issued.get(key)

    def expire_all(self) -> int:
        now = self._clock.now_ns()
        for entry in self._issued.values():
            entry.expires = min(entry.expires, now)
        return len(self._issued)

    def active(self) -> int:
        now = self._clock.now_ns()
        return sum(1 for e in self._issued.values() if e.expires > now)


class TemporaryKeys(_Issued[TemporaryKey]):
    """Temporary AK/SK pairs handed out by the metadata service; expiry on the simulator clock."""

    def __init__(self, clock: SimClock, lifetime_seconds: float = DEFAULT_TEMPORARY_SECONDS):
        self._keys: dict[str, TemporaryKey] = {}
        super().__init__(clock, self._keys)
        self.lifetime_seconds = lifetime_seconds

    def issue(self) -> dict[str, Any]:
        """A new temporary credential, as the metadata service's JSON answer."""
        alnum = string.ascii_letters + string.digits
        access = "TMP" + "".join(secrets.choice(string.ascii_uppercase) for _ in range(17))
        secret = "".join(secrets.choice(alnum) for _ in range(40))
        token = "gQpzaW0t" + secrets.token_urlsafe(300)
        expires = self._clock.now_ns() + int(self.lifetime_seconds * NS)
        self._keys[access] = TemporaryKey(secret, token, expires)
        self.issued_total += 1
        return {
            "credential": {
                "access": access,
                "secret": secret,
                "securitytoken": token,
                "expires_at": iam_time(expires),
            }
        }

    def expired(self, key: TemporaryKey) -> bool:
        return key.expires <= self._clock.now_ns()


@dataclass(frozen=True)
class Agency:
    """Another account's agency delegated to the simulator's account."""

    domain: str
    domain_id: str
    project_id: str
    project_name: str
    name: str = AGENCY_NAME

    @classmethod
    def for_seed(cls, seed: int) -> Agency:
        r = random.Random(f"agency-{seed}")
        return cls(
            domain=f"sim-other-domain-{seed}",
            domain_id=f"{r.getrandbits(128):032x}",
            project_id=f"{r.getrandbits(128):032x}",
            project_name="sim-region-1",
        )

    def matches(self, assume_role: Any) -> bool:
        if not isinstance(assume_role, dict):
            return False
        domain = assume_role.get("domain_name") or assume_role.get("domain_id")
        return (
            domain in (self.domain, self.domain_id) and assume_role.get("agency_name") == self.name
        )


TOKEN_LIFETIME_NS = 24 * 3600 * NS


@dataclass(frozen=True)
class Credentials:
    """The simulator's fake account, derived from the seed. ``repr`` never shows a secret."""

    ak: str = field(repr=False)
    sk: str = field(repr=False)
    username: str
    password: str = field(repr=False)
    domain: str
    domain_id: str
    user_id: str
    project_id: str
    project_name: str

    @classmethod
    def from_seed(cls, seed: int) -> Credentials:
        rng = random.Random(f"credentials-{seed}")
        upper = string.ascii_uppercase + string.digits
        alnum = string.ascii_letters + string.digits

        def pick(alphabet: str, n: int) -> str:
            return "".join(rng.choice(alphabet) for _ in range(n))

        return cls(
            ak="SIM" + pick(upper, 17),
            sk=pick(alnum, 40),
            username=f"sim-user-{seed}",
            password=pick(alnum, 20),
            domain=f"sim-domain-{seed}",
            domain_id=f"{rng.getrandbits(128):032x}",
            user_id=f"{rng.getrandbits(128):032x}",
            project_id=f"{rng.getrandbits(128):032x}",
            project_name="sim-region-1",
        )


@dataclass
class TokenEntry:
    project_id: str | None
    issued: int
    expires: int


class Tokens(_Issued[TokenEntry]):
    """Tokens issued by the simulated IAM; expiry is on the simulator clock."""

    def __init__(self, clock: SimClock) -> None:
        self._tokens: dict[str, TokenEntry] = {}
        super().__init__(clock, self._tokens)

    def issue(
        self, project_id: str | None, lifetime_ns: int = TOKEN_LIFETIME_NS
    ) -> tuple[str, TokenEntry]:
        now = self._clock.now_ns()
        # Real tokens are long opaque PKI blobs starting with MII; the length does not matter here.
        token = "MIIsim" + secrets.token_urlsafe(96)
        entry = TokenEntry(project_id=project_id, issued=now, expires=now + lifetime_ns)
        self._tokens[token] = entry
        self.issued_total += 1
        return token, entry
