"""Mutants that survive because no test can tell them from the code, each with the reason.

An entry names a mutant by what it changes, not by mutmut's numbered name: the function (its
name, with its class for the reader), the changed line(s) of the code and the same line(s) in
the mutant, as ``mutmut show NAME`` prints them (without the indentation). The verdict follows
the line when the function moves to another module or class, or when other mutants of the
function are added or removed; when the line itself changes, the entry matches nothing and
``make mutate`` lists it as stale (the mutant, if it survives, is shown again to be judged).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Equivalent:
    function: str
    before: str
    after: str
    reason: str


def changed_lines(diff: str) -> tuple[str, str]:
    """A unified diff (``mutmut show``) -> (code lines, mutant lines), stripped, one per line."""
    lines = [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    before = "\n".join(ln[1:].strip() for ln in lines if ln.startswith("-"))
    after = "\n".join(ln[1:].strip() for ln in lines if ln.startswith("+"))
    return before, after


def match(function: str, before: str, after: str) -> Equivalent | None:
    """The entry for a mutant of ``function`` (qualified name) changing ``before`` to ``after``."""
    name = function.rpartition(".")[2]
    return _BY_CONTENT.get((name, before, after))


_UTF8 = "'UTF-8' and 'utf-8' name the same codec"
_LOCALE = (
    "encoding=None reads with the locale's encoding, UTF-8 in the image and in CI (a non-UTF-8 "
    "locale cannot be set for one test without changing the whole process)"
)
_HEADER_CASE = "HTTP header names are case-insensitive (httpx's Headers and every server)"
_METHODS = "Starlette upper-cases a route's methods"
_CATCH_ALL = (
    'return [Route("/hooks/{rest:path}", _not_found, methods=["GET", "POST", "DELETE", "PUT"])]'
)
_KNOWN_ID = "a known cluster always has an ID (refresh keeps only clusters with one)"
_TIME_LEFT = (
    "they differ only when exactly no time is left; a retry is made only when its wait ends "
    "before the deadline, so after the wait some time is left (or, on a late clock, less than "
    "none, where both give the full value)"
)
_SLOTS = (
    "a larger pool is never used: checks enter it only while one of the `workers` slots is free "
    "(_acquire), so at most `workers` threads ever run"
)
_QUEUED = (
    "checks enter the pool only when a worker is free (_acquire), so the pool never holds a "
    "queued check to cancel"
)
_REFUSAL_TYPE = (
    "a refusal's error type is read nowhere: _describe words the kinds it does not know, the "
    "refusals among them, by their message, and _first ranks them as values either way"
)
_NO_PLACE = (
    "an error with no place is about the document itself (not a mapping), and then the only "
    "error: its order is never compared"
)
_ONE_PART = (
    "an unknown key is at the top (nothing to join) or one part below a section's own key: "
    "joining at most one part puts no separator"
)
_REQUIRED = (
    "a required key sits one part below its section (tls_server_config.key_file): the "
    "section's name is one part, joined with no separator, and all but the last is the first"
)
_NO_END_MARGIN = (
    "the days after the end's local date only add transitions at or after the next midnight, "
    "after the end (cutting the range there moves only a merged interval's end, or a holiday "
    "run's, which lies past that midnight)"
)
_EMPTY_PIECE = (
    "the extra piece of an interval clipped by a holiday is empty (it starts and ends at the "
    "holiday's edge): its awake and hibernate fall on one instant and cancel out in transitions"
)


EQUIVALENT: tuple[Equivalent, ...] = (
    # cce.auth
    Equivalent(
        "TokenAuth.__init__",
        "self._token: str | None = None",
        'self._token: str | None = ""',
        (
            "'' and None both mean 'no token read yet': the value is only compared with a token "
            "read from the file, which is never empty"
        ),
    ),
    Equivalent(
        "TokenAuth.current_token",
        "reason = exc.strerror or type(exc).__name__",
        "reason = exc.strerror or type(None).__name__",
        (
            "the fallback names the error type when an OSError has no strerror; stat() and read() "
            "always set it"
        ),
    ),
    Equivalent(
        "TokenAuth.current_token",
        'token = raw.decode("utf-8").strip()',
        'token = raw.decode("UTF-8").strip()',
        _UTF8,
    ),
    Equivalent(
        "TokenAuth.auth_flow",
        'request.headers["X-Auth-Token"] = token',
        'request.headers["x-auth-token"] = token',
        _HEADER_CASE,
    ),
    Equivalent(
        "TokenAuth.auth_flow",
        'request.headers["X-Auth-Token"] = token',
        'request.headers["X-AUTH-TOKEN"] = token',
        _HEADER_CASE,
    ),
    Equivalent(
        "TokenAuth.auth_flow",
        'request.headers["X-Auth-Token"] = fresh',
        'request.headers["x-auth-token"] = fresh',
        _HEADER_CASE,
    ),
    Equivalent(
        "TokenAuth.auth_flow",
        'request.headers["X-Auth-Token"] = fresh',
        'request.headers["X-AUTH-TOKEN"] = fresh',
        _HEADER_CASE,
    ),
    Equivalent(
        "PasswordAuth.async_auth_flow",
        'request.headers["X-Auth-Token"] = token',
        'request.headers["x-auth-token"] = token',
        _HEADER_CASE,
    ),
    Equivalent(
        "PasswordAuth.async_auth_flow",
        'request.headers["X-Auth-Token"] = token',
        'request.headers["X-AUTH-TOKEN"] = token',
        _HEADER_CASE,
    ),
    Equivalent(
        "PasswordAuth._request_token",
        'token = response.headers.get("x-subject-token", "").strip()',
        'token = response.headers.get("X-SUBJECT-TOKEN", "").strip()',
        _HEADER_CASE,
    ),
    Equivalent(
        "PasswordAuth._request_token",
        "info = parse_response(TokenBody, response.content, endpoint=IAM_TOKEN_PATH).token",
        "info = parse_response(TokenBody, response.content, endpoint=None).token",
        "the endpoint only names the call in a parse error, which is caught and dropped here",
    ),
    Equivalent(
        "PasswordAuth._request_token",
        "info = parse_response(TokenBody, response.content, endpoint=IAM_TOKEN_PATH).token",
        "info = parse_response(TokenBody, response.content, ).token",
        "the endpoint only names the call in a parse error, which is caught and dropped here",
    ),
    Equivalent(
        "PasswordAuth._request_token",
        "margin = min(self._refresh_margin, lifetime / 2) if lifetime > timedelta(0) else lifetime",
        (
            "margin = min(self._refresh_margin, lifetime / 2) if (lifetime > timedelta(0)) or True "
            "else lifetime"
        ),
        (
            "a lifetime of zero or less makes the token stale at once either way (the refresh "
            "instant is not after now)"
        ),
    ),
    Equivalent(
        "PasswordAuth._request_token",
        "margin = min(self._refresh_margin, lifetime / 2) if lifetime > timedelta(0) else lifetime",
        (
            "margin = min(self._refresh_margin, lifetime / 2) if lifetime >= timedelta(0) else "
            "lifetime"
        ),
        "for a lifetime of exactly zero both branches give a zero margin",
    ),
    Equivalent(
        "PasswordAuth._valid_token",
        "token = self._fresh()",
        "token = None",
        (
            "skipping the check before the lock only costs the lock: the token is checked again "
            "under it"
        ),
    ),
    # cce.aksk
    Equivalent(
        "AkSkAuth.sign_request",
        'request.headers["X-Sdk-Date"] = self._date(self._clock())',
        'request.headers["x-sdk-date"] = self._date(self._clock())',
        _HEADER_CASE,
    ),
    Equivalent(
        "AkSkAuth.sign_request",
        'request.headers["X-Sdk-Date"] = self._date(self._clock())',
        'request.headers["X-SDK-DATE"] = self._date(self._clock())',
        _HEADER_CASE,
    ),
    Equivalent(
        "AkSkAuth.sign_request",
        'if "host" not in request.headers:',
        'if "HOST" not in request.headers:',
        _HEADER_CASE,
    ),
    Equivalent(
        "AkSkAuth.sign_request",
        'request.headers["Host"] = request.url.netloc.decode("ascii")',
        'request.headers["host"] = request.url.netloc.decode("ascii")',
        _HEADER_CASE,
    ),
    Equivalent(
        "AkSkAuth.sign_request",
        'request.headers["Host"] = request.url.netloc.decode("ascii")',
        'request.headers["HOST"] = request.url.netloc.decode("ascii")',
        _HEADER_CASE,
    ),
    Equivalent(
        "AkSkAuth.sign_request",
        'request.headers["Host"] = request.url.netloc.decode("ascii")',
        'request.headers["Host"] = request.url.netloc.decode("ASCII")',
        "'ASCII' and 'ascii' name the same codec",
    ),
    Equivalent(
        "AkSkAuth.sign_request",
        'request.headers["X-Project-Id"] = self.project_id',
        'request.headers["x-project-id"] = self.project_id',
        _HEADER_CASE,
    ),
    Equivalent(
        "AkSkAuth.sign_request",
        'request.headers["X-Project-Id"] = self.project_id',
        'request.headers["X-PROJECT-ID"] = self.project_id',
        _HEADER_CASE,
    ),
    Equivalent(
        "AkSkAuth.sign_request",
        'request.headers["X-Security-Token"] = self._security_token',
        'request.headers["x-security-token"] = self._security_token',
        _HEADER_CASE,
    ),
    Equivalent(
        "AkSkAuth.sign_request",
        'request.headers["X-Security-Token"] = self._security_token',
        'request.headers["X-SECURITY-TOKEN"] = self._security_token',
        _HEADER_CASE,
    ),
    Equivalent(
        "AkSkAuth.sign_request",
        'request.headers["Authorization"] = authorization',
        'request.headers["authorization"] = authorization',
        _HEADER_CASE,
    ),
    Equivalent(
        "AkSkAuth.sign_request",
        'request.headers["Authorization"] = authorization',
        'request.headers["AUTHORIZATION"] = authorization',
        _HEADER_CASE,
    ),
    Equivalent(
        "AkSkAuth.sign_request",
        "key.lower(): value",
        "key.upper(): value",
        "sign() lower-cases the names of the headers it is given (and they are unique here)",
    ),
    Equivalent(
        "AkSkAuth.__init__",
        'self._last_date: tuple[int | None, str] = (None, "")',
        'self._last_date: tuple[int | None, str] = (None, "XXXX")',
        "no second is None, so the first date is always formatted and this text is never read",
    ),
    # cce.agency
    # cce.client
    Equivalent(
        "CCEClient._send",
        "timeout = min(self.timeout, left) if retries and left > 0 else self.timeout",
        "timeout = min(self.timeout, left) if retries and left >= 0 else self.timeout",
        _TIME_LEFT,
    ),
    Equivalent(
        "CCEClient._send",
        "min(self.request_deadline, left) if retries and left > 0 else self.request_deadline",
        "min(self.request_deadline, left) if retries and left >= 0 else self.request_deadline",
        _TIME_LEFT,
    ),
    # cce.signing
    Equivalent(
        "_encode",
        'return quote(value, safe="~")',
        'return quote(value, safe="XX~XX")',
        "quote()'s safe set gains 'X', which is unreserved and never quoted anyway",
    ),
    Equivalent(
        "_signature",
        'hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),',
        'hashlib.sha256(canonical_request.encode("UTF-8")).hexdigest(),',
        _UTF8,
    ),
    Equivalent(
        "_signature",
        (
            'return hmac.new(sk.encode("utf-8"), string_to_sign.encode("utf-8"), '
            "hashlib.sha256).hexdigest()"
        ),
        (
            'return hmac.new(sk.encode("UTF-8"), string_to_sign.encode("utf-8"), '
            "hashlib.sha256).hexdigest()"
        ),
        _UTF8,
    ),
    Equivalent(
        "_signature",
        (
            'return hmac.new(sk.encode("utf-8"), string_to_sign.encode("utf-8"), '
            "hashlib.sha256).hexdigest()"
        ),
        (
            'return hmac.new(sk.encode("utf-8"), string_to_sign.encode("UTF-8"), '
            "hashlib.sha256).hexdigest()"
        ),
        _UTF8,
    ),
    # hibernation.controller
    Equivalent(
        "due_transition",
        'if wanted and wanted != override.get("state") and (due is None or ts(due.at) < until):',
        'if wanted and wanted != override.get("state") and (due is None or ts(due.at) <= until):',
        (
            "they differ only when a policy transition falls exactly at the keep override's end; "
            "then the state the policy wants at that instant is the one that transition sets, so "
            "the end's transition is that same transition (same instant, same action)"
        ),
    ),
    Equivalent(
        "HibernationController.clear_override",
        'removed = self.book.clear_override(self.key(found[0], found[1].id or ""))',
        'removed = self.book.clear_override(self.key(found[0], found[1].id or "XXXX"))',
        _KNOWN_ID,
    ),
    Equivalent(
        "ClusterView.governed",
        'ident = (found[0], found[1].id or "")',
        'ident = (found[0], found[1].id or "XXXX")',
        _KNOWN_ID,
    ),
    Equivalent(
        "HibernationController.request",
        'ident = (found[0], found[1].id or "")',
        'ident = (found[0], found[1].id or "XXXX")',
        _KNOWN_ID,
    ),
    Equivalent(
        "ActionRunner.follow",
        "seen_transit = False",
        "seen_transit = None",
        "None and False are both false, the only way it is read",
    ),
    Equivalent(
        "ActionRunner.attempts",
        'last_reason = ""',
        "last_reason = None",
        "every path to a later attempt or to giving up sets the reason first",
    ),
    Equivalent(
        "ActionRunner.attempts",
        'last_reason = ""',
        'last_reason = "XXXX"',
        "every path to a later attempt or to giving up sets the reason first",
    ),
    Equivalent(
        "ActionRunner.follow",
        'seen_transit or "fail" in (cluster.status.reason or "").lower()',
        'seen_transit or "fail" in (cluster.status.reason or "XXXX").lower()',
        "a missing reason read as 'XXXX' contains no 'fail' either",
    ),
    # hibernation.hooks
    Equivalent(
        "_Hooks._body",
        'raise _BadRequest(f"the body is not JSON: {str(exc)[:200]}") from None',
        'raise _BadRequest(f"the body is not JSON: {str(exc)[:201]}") from None',
        (
            "no error json.loads raises is longer than 200 characters (a fixed message, a line, "
            "a column and a position; a codec's or the integer digits limit's message): the "
            "cut is a bound that never cuts"
        ),
    ),
    Equivalent(
        "_Hooks.dispatch",
        "if until_dt > latest:",
        "if until_dt >= latest:",
        (
            "they differ only for an 'until' equal to the microsecond to the clock read while "
            "the request is checked, plus ten years: no request can aim at that instant"
        ),
    ),
    Equivalent(
        "_Hooks._read",
        'declared = request.headers.get("content-length", "")',
        'declared = request.headers.get("CONTENT-LENGTH", "")',
        _HEADER_CASE + " (Starlette's Headers too)",
    ),
    Equivalent(
        "_Hooks._read",
        'declared = request.headers.get("content-length", "")',
        'declared = request.headers.get("content-length", "XXXX")',
        "without a Content-Length neither '' nor 'XXXX' is digits: the body is read either way",
    ),
    Equivalent(
        "load_hook_token",
        'return Path(path).read_text(encoding="utf-8").strip() or None',
        "return Path(path).read_text(encoding=None).strip() or None",
        _LOCALE,
    ),
    Equivalent(
        "load_hook_token",
        'return Path(path).read_text(encoding="utf-8").strip() or None',
        'return Path(path).read_text(encoding="UTF-8").strip() or None',
        _UTF8,
    ),
    Equivalent(
        "_Hooks._outcome",
        "status = _STATUS.get(outcome.result, 500)",
        "status = _STATUS.get(outcome.result, 501)",
        "the default status of an unknown result: every result the controller returns has one",
    ),
    Equivalent(
        "_Hooks.dispatch",
        'verb = path.rsplit("/", 1)[-1]',
        'verb = path.rsplit("/", )[-1]',
        "the routes end in the verb: every split of the path on '/' ends with it",
    ),
    Equivalent(
        "_Hooks.dispatch",
        'verb = path.rsplit("/", 1)[-1]',
        'verb = path.rsplit("/", 2)[-1]',
        "the routes end in the verb: every split of the path on '/' ends with it",
    ),
    Equivalent(
        "_Hooks.dispatch",
        'verb = path.rsplit("/", 1)[-1]',
        'verb = path.rsplit("/", 1)[+1]',
        "rsplit('/', 1) has two parts: [+1] and [-1] are the same one",
    ),
    Equivalent(
        "build_hook_routes",
        _CATCH_ALL,
        (
            'return [Route("/hooks/{rest:path}", _not_found, methods=["get", "POST", "DELETE", '
            '"PUT"])]'
        ),
        _METHODS,
    ),
    Equivalent(
        "build_hook_routes",
        _CATCH_ALL,
        (
            'return [Route("/hooks/{rest:path}", _not_found, methods=["GET", "post", "DELETE", '
            '"PUT"])]'
        ),
        _METHODS,
    ),
    Equivalent(
        "build_hook_routes",
        _CATCH_ALL,
        (
            'return [Route("/hooks/{rest:path}", _not_found, methods=["GET", "POST", "delete", '
            '"PUT"])]'
        ),
        _METHODS,
    ),
    Equivalent(
        "build_hook_routes",
        _CATCH_ALL,
        (
            'return [Route("/hooks/{rest:path}", _not_found, methods=["GET", "POST", "DELETE", '
            '"put"])]'
        ),
        _METHODS,
    ),
    Equivalent(
        "build_hook_routes",
        'Route(f"{c}/hibernate", hooks.guarded, methods=["POST"]),',
        'Route(f"{c}/hibernate", hooks.guarded, methods=["post"]),',
        _METHODS,
    ),
    Equivalent(
        "_Hooks.authorized",
        'header = request.headers.get("authorization", "")',
        'header = request.headers.get("AUTHORIZATION", "")',
        "Starlette's request headers are looked up case-insensitively",
    ),
    Equivalent(
        "_Hooks.authorized",
        'header = request.headers.get("authorization", "")',
        'header = request.headers.get("authorization", "XXXX")',
        (
            "a missing header reads as a token that never matches either way (the hooks are off "
            "without a non-empty token)"
        ),
    ),
    Equivalent(
        "_digest",
        'return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()',
        'return hashlib.sha256(value.encode("UTF-8", "surrogateescape")).digest()',
        _UTF8,
    ),
    Equivalent(
        "build_hook_routes",
        'Route(f"{c}/awake", hooks.guarded, methods=["POST"]),',
        'Route(f"{c}/awake", hooks.guarded, methods=["post"]),',
        _METHODS,
    ),
    Equivalent(
        "build_hook_routes",
        'Route(f"{c}/skip", hooks.guarded, methods=["POST"]),',
        'Route(f"{c}/skip", hooks.guarded, methods=["post"]),',
        _METHODS,
    ),
    Equivalent(
        "build_hook_routes",
        'Route(f"{c}/override", hooks.guarded, methods=["DELETE"]),',
        'Route(f"{c}/override", hooks.guarded, methods=["delete"]),',
        _METHODS,
    ),
    Equivalent(
        "build_hook_routes",
        'Route("/hooks/plan", hooks.guarded, methods=["GET"]),',
        'Route("/hooks/plan", hooks.guarded, methods=["get"]),',
        _METHODS,
    ),
    Equivalent(
        "build_hook_routes",
        'Route("/hooks/alertmanager", hooks.guarded, methods=["POST"]),',
        'Route("/hooks/alertmanager", hooks.guarded, methods=["post"]),',
        _METHODS,
    ),
    Equivalent(
        "build_hook_routes",
        'Route("/hooks/plan", hooks.guarded, methods=["GET"]),',
        'Route("/hooks/plan", hooks.guarded, methods=None),',
        "Starlette gives a function route without methods GET (and HEAD): the same route",
    ),
    Equivalent(
        "build_hook_routes",
        'Route("/hooks/plan", hooks.guarded, methods=["GET"]),',
        'Route("/hooks/plan", hooks.guarded, ),',
        "Starlette gives a function route without methods GET (and HEAD): the same route",
    ),
    Equivalent(
        "parse_rfc3339",
        'parsed = datetime.fromisoformat(value.strip().replace("z", "Z").replace("Z", "+00:00"))',
        (
            'parsed = datetime.fromisoformat(value.strip().replace("z", "Z").replace("XXZXX", '
            '"+00:00"))'
        ),
        "datetime.fromisoformat() reads a trailing Z itself since Python 3.11",
    ),
    Equivalent(
        "parse_rfc3339",
        'parsed = datetime.fromisoformat(value.strip().replace("z", "Z").replace("Z", "+00:00"))',
        'parsed = datetime.fromisoformat(value.strip().replace("z", "Z").replace("z", "+00:00"))',
        "datetime.fromisoformat() reads a trailing Z itself since Python 3.11",
    ),
    Equivalent(
        "_Hooks.dispatch",
        'cluster_id, action, until=until_dt, reason=reason, source="hook"\n)',
        "cluster_id, action, until=until_dt, reason=reason, )",
        "'hook' is the default source: the same call",
    ),
    # hibernation.schedule
    Equivalent(
        "_cron_events",
        "begin, stop = _midnight(first), _midnight(last + timedelta(days=1))",
        "begin, stop = _midnight(first), _midnight(last - timedelta(days=1))",
        "the range still ends a day after the asked range (two days of margin, one kept)",
    ),
    Equivalent(
        "_cron_events",
        "begin, stop = _midnight(first), _midnight(last + timedelta(days=1))",
        "begin, stop = _midnight(first), _midnight(last + timedelta(days=2))",
        "a longer range than the asked range plus its margin changes nothing inside it",
    ),
    Equivalent(
        "_cron_events",
        "it = croniter(expr, begin - timedelta(seconds=1))",
        "it = croniter(expr, begin - timedelta(seconds=2))",
        "cron fires on whole minutes: starting 2 s or 1 s before midnight finds the same firings",
    ),
    Equivalent(
        "_cron_events",
        "while (fire := it.get_next(datetime)) < stop:",
        "while (fire := it.get_next(datetime)) <= stop:",
        "a firing exactly at the end of the margin is days after the asked range",
    ),
    Equivalent(
        "_days",
        "return [first + timedelta(days=i) for i in range((last - first).days + 1)]",
        "return [first + timedelta(days=i) for i in range((last - first).days - 1)]",
        _NO_END_MARGIN,
    ),
    Equivalent(
        "_days",
        "return [first + timedelta(days=i) for i in range((last - first).days + 1)]",
        "return [first + timedelta(days=i) for i in range((last - first).days + 2)]",
        "a longer range than the asked range plus its margin changes nothing inside it",
    ),
    Equivalent(
        "transitions",
        "last = _local(end, tz).date() + timedelta(days=2)",
        "last = _local(end, tz).date() + timedelta(days=3)",
        "a longer range than the asked range plus its margin changes nothing inside it",
    ),
    Equivalent(
        "transitions",
        "first = _local(start, tz).date() - timedelta(days=2)",
        "first = _local(start, tz).date() - timedelta(days=3)",
        (
            "a range starting a day earlier changes nothing inside the asked range: what a day "
            "adds (a window reaches at most into the next day, a holiday covers its own day) ends "
            "before the start; a cron holiday's state is read however far back"
        ),
    ),
    Equivalent(
        "_window_events",
        "if end <= h_start or start >= h_end:",
        "if end < h_start or start >= h_end:",
        "an interval ending at the holiday's start, clipped, is the same interval",
    ),
    Equivalent(
        "_window_events",
        "if end <= h_start or start >= h_end:",
        "if end <= h_start or start > h_end:",
        "an interval starting at the holiday's end, clipped, is the same interval",
    ),
    Equivalent(
        "_window_events",
        "if start < h_start:",
        "if start <= h_start:",
        _EMPTY_PIECE,
    ),
    Equivalent(
        "_window_events",
        "if end > h_end:",
        "if end >= h_end:",
        _EMPTY_PIECE,
    ),
    Equivalent(
        "_cron_events",
        "it = croniter(expr, begin - timedelta(seconds=1))",
        "it = croniter(expr, begin + timedelta(seconds=1))",
        (
            "a firing at the computed range's first instant is two days before the asked range, "
            "and a holiday's states are read from the cron apart (_cron_state)"
        ),
    ),
    Equivalent(
        "_window_events",
        "if merged and start <= merged[-1][1]:",
        "if merged and start < merged[-1][1]:",
        (
            "two touching intervals left apart give a hibernate and an awake at one instant, "
            "which cancel out in transitions: the same transitions as the one merged interval"
        ),
    ),
    Equivalent(
        "resolve_local",
        "if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) >= naive:",
        "if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) > naive:",
        (
            "the bisection runs only for a wall time in a DST gap, which no instant shows: no "
            "instant's wall time equals it"
        ),
    ),
    # webconfig
    Equivalent(
        "_describe_os_error",
        "return str(exc) or type(exc).__name__",
        "return str(exc) or type(None).__name__",
        "the fallback for an error without text: OSError and UnicodeDecodeError here have one",
    ),
    Equivalent(
        "load_web_config",
        'text = p.read_text(encoding="utf-8")',
        "text = p.read_text(encoding=None)",
        _LOCALE,
    ),
    Equivalent(
        "load_web_config",
        'text = p.read_text(encoding="utf-8")',
        'text = p.read_text(encoding="UTF-8")',
        _UTF8,
    ),
    Equivalent(
        "_refuse",
        'return PydanticCustomError("web_config", message, {**ctx, **where})',
        'return PydanticCustomError("XXweb_configXX", message, {**ctx, **where})',
        _REFUSAL_TYPE,
    ),
    Equivalent(
        "_refuse",
        'return PydanticCustomError("web_config", message, {**ctx, **where})',
        'return PydanticCustomError("WEB_CONFIG", message, {**ctx, **where})',
        _REFUSAL_TYPE,
    ),
    Equivalent(
        "_first",
        "rank = _RANKS.get(kind, 3) if len(loc) <= 2 else 3  # a header's name is a value",
        "rank = _RANKS.get(kind, 3) if len(loc) <= 2 else 4  # a header's name is a value",
        (
            "only a header name that is not a string is placed this deep; the one value of its "
            "section it can tie with at rank 3 is http2's, which pydantic checks and lists "
            "before the headers, so http2 is named at rank 3 (first of the tie) and at 4 alike"
        ),
    ),
    Equivalent(
        "_first",
        "if len(loc) <= 1 and rank <= 1:",
        "if len(loc) <= 1 and rank <= 2:",
        "rank 2 at the top level would be a missing top-level key, and every one is optional",
    ),
    Equivalent(
        "_first",
        "return (-1, rank)",
        "return (-2, rank)",
        (
            "a top-level key's error ties at -1 only with an error about the document itself "
            "(no place), which comes alone: a document that is not a mapping has no keys"
        ),
    ),
    Equivalent(
        "_first",
        "return (list(_Document.model_fields).index(loc[0]) if loc else -1, rank)",
        "return (list(_Document.model_fields).index(loc[0]) if loc else +1, rank)",
        _NO_PLACE,
    ),
    Equivalent(
        "_first",
        "return (list(_Document.model_fields).index(loc[0]) if loc else -1, rank)",
        "return (list(_Document.model_fields).index(loc[0]) if loc else -2, rank)",
        _NO_PLACE,
    ),
    Equivalent(
        "_describe",
        'loc = (*loc[:-1], str(ctx["instead"]))',
        'loc = (*loc[:+1], str(ctx["instead"]))',
        (
            "the one refusal that blames another key (min_version, from max_version's check) "
            "is placed at tls_server_config.max_version: of two parts, all but the last is the "
            "first"
        ),
    ),
    Equivalent(
        "_describe",
        'section = _SECTIONS.get(".".join(loc[:-1]), _Document)',
        'section = _SECTIONS.get("XX.XX".join(loc[:-1]), _Document)',
        _ONE_PART,
    ),
    Equivalent(
        "_describe",
        'section = _SECTIONS.get(".".join(loc[:-1]), _Document)',
        'section = _SECTIONS.get(".".join(loc[:+1]), _Document)',
        (
            "an unknown key is at the top (its first part is the key, never a section's name, "
            "those being known keys: the document either way) or one part below a section "
            "(the first part is the section either way)"
        ),
    ),
    Equivalent(
        "_describe",
        "return f\"{path}: required when {'.'.join(loc[:-1])} is set\"",
        "return f\"{path}: required when {'XX.XX'.join(loc[:-1])} is set\"",
        _REQUIRED,
    ),
    Equivalent(
        "_describe",
        "return f\"{path}: required when {'.'.join(loc[:-1])} is set\"",
        "return f\"{path}: required when {'.'.join(loc[:+1])} is set\"",
        _REQUIRED,
    ),
    Equivalent(
        "BasicAuthVerifier.__init__",
        "self._key = secrets.token_bytes(32)",
        "self._key = secrets.token_bytes(None)",
        "token_bytes(None) draws 32 bytes, the same key length",
    ),
    Equivalent(
        "BasicAuthVerifier.__init__",
        "self._key = secrets.token_bytes(32)",
        "self._key = secrets.token_bytes(33)",
        "a 33-byte HMAC key instead of 32: the cache matches the same credentials",
    ),
    Equivalent(
        "BasicAuthVerifier._digest",
        'msg = b"\\0".join((user.encode(), password, hashed))',
        'msg = b"XX\\0XX".join((user.encode(), password, hashed))',
        "another separator inside an HMAC that is only compared with HMACs made the same way",
    ),
    Equivalent(
        "BasicAuthVerifier.verify",
        'pw = password.encode("utf-8", "surrogateescape")',
        'pw = password.encode("UTF-8", "surrogateescape")',
        _UTF8,
    ),
    Equivalent(
        "BasicAuthVerifier.cached",
        'self._digest(user, password.encode("utf-8", "surrogateescape"), hashed) in self._cache',
        'self._digest(user, password.encode("UTF-8", "surrogateescape"), hashed) in self._cache',
        _UTF8,
    ),
    # ha.sharding
    Equivalent(
        "shard_of",
        'digest = hashlib.sha256(cluster_id.encode("utf-8")).digest()',
        'digest = hashlib.sha256(cluster_id.encode("UTF-8")).digest()',
        _UTF8,
    ),
    Equivalent(
        "shard_of",
        'return int.from_bytes(digest[:8], "big") % total',
        "return int.from_bytes(digest[:8], ) % total",
        "int.from_bytes() defaults to big-endian since Python 3.11, the oldest supported",
    ),
    Equivalent(
        "ShardConfig.owns",
        'cluster_id = cluster if isinstance(cluster, str) else (cluster.id or "")',
        'cluster_id = cluster if isinstance(cluster, str) else (cluster.id or "XXXX")',
        "a cluster without an ID is dropped after the shard filter either way",
    ),
    Equivalent(
        "ShardConfig.registry",
        "registry = CollectorRegistry(auto_describe=True)",
        "registry = CollectorRegistry(auto_describe=False)",
        "auto_describe only checks names at registration; these two are distinct",
    ),
    # webconfig: the basic-auth pool
    Equivalent(
        "BasicAuthVerifier.aclose",
        "self._pool.shutdown(wait=False, cancel_futures=True)",
        "self._pool.shutdown(wait=False, )",
        _QUEUED,
    ),
    Equivalent(
        "BasicAuthVerifier.aclose",
        "self._pool.shutdown(wait=False, cancel_futures=True)",
        "self._pool.shutdown(wait=False, cancel_futures=False)",
        _QUEUED,
    ),
    Equivalent(
        "BasicAuthVerifier.__init__",
        'self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="bcrypt")',
        'self._pool = ThreadPoolExecutor(max_workers=None, thread_name_prefix="bcrypt")',
        _SLOTS,
    ),
    Equivalent(
        "BasicAuthVerifier.__init__",
        'self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="bcrypt")',
        'self._pool = ThreadPoolExecutor(thread_name_prefix="bcrypt")',
        _SLOTS,
    ),
    Equivalent(
        "BasicAuthVerifier.__init__",
        'self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="bcrypt")',
        'self._pool = ThreadPoolExecutor(max_workers=max(2, workers), thread_name_prefix="bcrypt")',
        _SLOTS,
    ),
    Equivalent(
        "BasicAuthVerifier._acquire",
        "if self._free > 0 and not self._waiting[0] and not self._waiting[1]:",
        "if self._free > 0 and not self._waiting[1] and not self._waiting[1]:",
        (
            "a free slot never coexists with a waiting check: _release hands a freed slot to the "
            "first waiter and counts it free only when none waits"
        ),
    ),
    # collect.statefile: the merge of two writers
    Equivalent(
        "StateFile.take_in",
        "self._base = copy.deepcopy(theirs)",
        "self._base = copy.copy(theirs)",
        (
            "the file's section as read is held by nothing that changes it: the merge builds new "
            "maps and lists and takes from it only their values (an override, a time, a history "
            "entry), which are replaced, never changed in place; a shallow copy holds the same"
        ),
    ),
    Equivalent(
        "merge_hibernation",
        "changed = False",
        "changed = None",
        "None and False are both false: `changed` is only set to True and read as true or false",
    ),
)

_BY_CONTENT = {(e.function.rpartition(".")[2], e.before, e.after): e for e in EQUIVALENT}
