"""Mutants that survive because no test can tell them from the code, each with the reason.

Keyed by mutmut's mutant name (``mutmut show NAME`` prints the change). The names number the
mutations of one function in order, so a change to that function can renumber them: after such
a change ``make mutate`` shows the diff of every mutant listed here next to its reason, to be
judged anew.
"""

from __future__ import annotations

_UTF8 = "'UTF-8' and 'utf-8' name the same codec"
_LOCALE = (
    "encoding=None reads with the locale's encoding, UTF-8 in the image and in CI (a non-UTF-8 "
    "locale cannot be set for one test without changing the whole process)"
)
_HEADER_CASE = "HTTP header names are case-insensitive (httpx's Headers and every server)"
_METHODS = "Starlette upper-cases a route's methods"
_KNOWN_ID = "a known cluster always has an ID (refresh keeps only clusters with one)"

EQUIVALENT: dict[str, str] = {
    # auth
    "exporter.cce.auth.xǁTokenAuthǁ__init____mutmut_12": (
        "'' and None both mean 'no token read yet': the value is only compared with a token "
        "read from the file, which is never empty"
    ),
    "exporter.cce.auth.xǁTokenAuthǁ__init____mutmut_13": (
        "'' and None both never equal a stat tuple, the only thing it is compared with"
    ),
    "exporter.cce.auth.xǁTokenAuthǁcurrent_token__mutmut_18": (
        "the fallback names the error type when an OSError has no strerror; stat() and read() "
        "always set it"
    ),
    "exporter.cce.auth.xǁTokenAuthǁcurrent_token__mutmut_23": _UTF8,
    "exporter.cce.auth.xǁTokenAuthǁauth_flow__mutmut_4": _HEADER_CASE,
    "exporter.cce.auth.xǁTokenAuthǁauth_flow__mutmut_5": _HEADER_CASE,
    "exporter.cce.auth.xǁTokenAuthǁauth_flow__mutmut_17": _HEADER_CASE,
    "exporter.cce.auth.xǁTokenAuthǁauth_flow__mutmut_18": _HEADER_CASE,
    # signing
    "exporter.cce.signing.x__encode__mutmut_5": (
        "quote()'s safe set gains 'X', which is unreserved and never quoted anyway"
    ),
    "exporter.cce.signing.x__signature__mutmut_22": _UTF8,
    "exporter.cce.signing.x__signature__mutmut_31": _UTF8,
    "exporter.cce.signing.x__signature__mutmut_34": _UTF8,
    # controller
    "exporter.hibernation.controller.xǁHibernationControllerǁclear_override__mutmut_19": (
        _KNOWN_ID
    ),
    # hooks
    "exporter.hibernation.hooks.x_load_hook_token__mutmut_30": _LOCALE,
    "exporter.hibernation.hooks.x_load_hook_token__mutmut_33": _UTF8,
    "exporter.hibernation.hooks.xǁ_Hooksǁ_outcome__mutmut_3": (
        "the default status of an unknown result: every result the controller returns has one"
    ),
    "exporter.hibernation.hooks.xǁ_Hooksǁ_outcome__mutmut_5": (
        "the default status of an unknown result: every result the controller returns has one"
    ),
    "exporter.hibernation.hooks.xǁ_Hooksǁ_outcome__mutmut_6": (
        "the default status of an unknown result: every result the controller returns has one"
    ),
    # schedule: transitions() asks _cron_events for two days of margin on each side
    "exporter.hibernation.schedule.x__cron_events__mutmut_4": (
        "the range still ends a day after the asked range (two days of margin, one kept)"
    ),
    "exporter.hibernation.schedule.x__cron_events__mutmut_6": (
        "a longer range than the asked range plus its margin changes nothing inside it"
    ),
    "exporter.hibernation.schedule.x__cron_events__mutmut_22": (
        "cron fires on whole minutes: starting 2 s or 1 s before midnight finds the same firings"
    ),
    "exporter.hibernation.schedule.x__cron_events__mutmut_24": (
        "a firing exactly at the end of the margin is days after the asked range"
    ),
    # web config
    "exporter.webconfig.x__describe_os_error__mutmut_4": (
        "the fallback for an error without text: OSError and UnicodeDecodeError here have one"
    ),
    "exporter.webconfig.x__path__mutmut_7": (
        "base_dir / an absolute path is that absolute path (pathlib)"
    ),
    "exporter.webconfig.x_load_web_config__mutmut_4": _LOCALE,
    "exporter.webconfig.x_load_web_config__mutmut_6": _UTF8,
    "exporter.webconfig.x_load_web_config__mutmut_33": (
        "an empty document parses as None, and None reads as an empty mapping either way"
    ),
    "exporter.webconfig.xǁBasicAuthVerifierǁ__init____mutmut_4": (
        "token_bytes(None) draws 32 bytes, the same key length"
    ),
    "exporter.webconfig.xǁBasicAuthVerifierǁ__init____mutmut_5": (
        "a 33-byte HMAC key instead of 32: the cache matches the same credentials"
    ),
    "exporter.webconfig.xǁBasicAuthVerifierǁ_digest__mutmut_3": (
        "another separator inside an HMAC that is only compared with HMACs made the same way"
    ),
    "exporter.webconfig.xǁBasicAuthVerifierǁverify__mutmut_7": _UTF8,
    "exporter.webconfig.xǁBasicAuthVerifierǁverify__mutmut_38": (
        "the cache's values are never read (it is a set in an OrderedDict)"
    ),
    "exporter.webconfig.xǁBasicAuthVerifierǁcached__mutmut_16": _UTF8,
    # sharding
    "exporter.ha.sharding.x_shard_of__mutmut_8": _UTF8,
    "exporter.ha.sharding.x_shard_of__mutmut_13": (
        "int.from_bytes() defaults to big-endian since Python 3.11, the oldest supported"
    ),
    "exporter.ha.sharding.xǁShardConfigǁowns__mutmut_8": (
        "a cluster without an ID is dropped after the shard filter either way"
    ),
    "exporter.ha.sharding.xǁShardConfigǁregistry__mutmut_2": (
        "auto_describe only checks names at registration; these two are distinct"
    ),
    "exporter.ha.sharding.xǁShardConfigǁregistry__mutmut_3": (
        "auto_describe only checks names at registration; these two are distinct"
    ),
    "exporter.cce.auth.xǁPasswordAuthǁasync_auth_flow__mutmut_4": _HEADER_CASE,
    "exporter.cce.auth.xǁPasswordAuthǁasync_auth_flow__mutmut_5": _HEADER_CASE,
    "exporter.cce.auth.xǁPasswordAuthǁasync_auth_flow__mutmut_13": _HEADER_CASE,
    "exporter.cce.auth.xǁPasswordAuthǁasync_auth_flow__mutmut_14": _HEADER_CASE,
    "exporter.cce.auth.xǁPasswordAuthǁ_request_token__mutmut_32": _HEADER_CASE,
    "exporter.cce.auth.xǁPasswordAuthǁ_request_token__mutmut_41": (
        "the endpoint only names the call in a parse error, which is caught and dropped here"
    ),
    "exporter.cce.auth.xǁPasswordAuthǁ_request_token__mutmut_44": (
        "the endpoint only names the call in a parse error, which is caught and dropped here"
    ),
    "exporter.cce.auth.xǁPasswordAuthǁ_request_token__mutmut_59": (
        "a lifetime of zero or less makes the token stale at once either way (the refresh "
        "instant is not after now)"
    ),
    "exporter.cce.auth.xǁPasswordAuthǁ_request_token__mutmut_66": (
        "for a lifetime of exactly zero both branches give a zero margin"
    ),
    "exporter.cce.auth.xǁPasswordAuthǁ_valid_token__mutmut_1": (
        "skipping the check before the lock only costs the lock: the token is checked again "
        "under it"
    ),
    "exporter.cce.auth.xǁPasswordAuthǁ__init____mutmut_45": (
        "'' and None both mean no token: the refresh instant, still None, decides first"
    ),
    "exporter.cce.auth.xǁPasswordAuthǁ__init____mutmut_46": (
        "never compared before the first token, which sets it with the token"
    ),
    "exporter.webconfig.xǁBasicAuthVerifierǁverify__mutmut_40": (
        "popitem(last=None) pops the oldest entry, as last=False does (None is false)"
    ),
    "exporter.hibernation.hooks.xǁ_Hooksǁdispatch__mutmut_49": (
        "the routes end in the verb: every split of the path on '/' ends with it"
    ),
    "exporter.hibernation.hooks.xǁ_Hooksǁdispatch__mutmut_52": (
        "the routes end in the verb: every split of the path on '/' ends with it"
    ),
    "exporter.hibernation.hooks.xǁ_Hooksǁdispatch__mutmut_53": (
        "rsplit('/', 1) has two parts: [+1] and [-1] are the same one"
    ),
    "exporter.hibernation.hooks.x_build_hook_routes__mutmut_11": _METHODS,
    "exporter.hibernation.hooks.x_build_hook_routes__mutmut_13": _METHODS,
    "exporter.hibernation.hooks.x_build_hook_routes__mutmut_15": _METHODS,
    "exporter.hibernation.hooks.x_build_hook_routes__mutmut_17": _METHODS,
    "exporter.hibernation.hooks.x_build_hook_routes__mutmut_33": _METHODS,
    "exporter.hibernation.hooks.xǁ_Hooksǁauthorized__mutmut_7": (
        "Starlette's request headers are looked up case-insensitively"
    ),
    "exporter.hibernation.hooks.xǁ_Hooksǁauthorized__mutmut_8": (
        "a missing header reads as a token that never matches either way (the hooks are off "
        "without a non-empty token)"
    ),
    "exporter.hibernation.hooks.x__digest__mutmut_7": _UTF8,
    "exporter.hibernation.controller.xǁHibernationControllerǁ_governed__mutmut_9": _KNOWN_ID,
    "exporter.hibernation.controller.xǁHibernationControllerǁrequest__mutmut_29": _KNOWN_ID,
    "exporter.hibernation.controller.xǁHibernationControllerǁrequest__mutmut_26": (
        "ident[0] is not read on the refusal path, the only one that uses this ident"
    ),
    "exporter.hibernation.hooks.x_build_hook_routes__mutmut_41": _METHODS,
    "exporter.hibernation.hooks.x_build_hook_routes__mutmut_49": _METHODS,
    "exporter.hibernation.hooks.x_build_hook_routes__mutmut_57": _METHODS,
    "exporter.hibernation.hooks.x_build_hook_routes__mutmut_67": _METHODS,
    "exporter.hibernation.hooks.x_build_hook_routes__mutmut_77": _METHODS,
    "exporter.hibernation.controller.xǁHibernationControllerǁ_follow__mutmut_3": (
        "None and False are both false, the only way it is read"
    ),
    "exporter.hibernation.controller.xǁHibernationControllerǁ_attempts__mutmut_4": (
        "every path to a later attempt or to giving up sets the reason first"
    ),
    "exporter.hibernation.controller.xǁHibernationControllerǁ_attempts__mutmut_5": (
        "every path to a later attempt or to giving up sets the reason first"
    ),
    "exporter.hibernation.controller.xǁHibernationControllerǁ_attempts__mutmut_6": (
        "the last error is only asked whether it is a RateLimited; '' and None are not"
    ),
    "exporter.hibernation.controller.xǁHibernationControllerǁ_attempts__mutmut_21": (
        "the last error is only asked whether it is a RateLimited; '' and None are not"
    ),
    "exporter.hibernation.hooks.x_build_hook_routes__mutmut_60": (
        "Starlette gives a function route without methods GET (and HEAD): the same route"
    ),
    "exporter.hibernation.hooks.x_build_hook_routes__mutmut_63": (
        "Starlette gives a function route without methods GET (and HEAD): the same route"
    ),
    "exporter.hibernation.hooks.x_parse_rfc3339__mutmut_15": (
        "datetime.fromisoformat() reads a trailing Z itself since Python 3.11"
    ),
    "exporter.hibernation.hooks.x_parse_rfc3339__mutmut_16": (
        "datetime.fromisoformat() reads a trailing Z itself since Python 3.11"
    ),
    "exporter.hibernation.hooks.xǁ_Hooksǁdispatch__mutmut_111": (
        "'hook' is the default source: the same call"
    ),
    "exporter.hibernation.controller.xǁHibernationControllerǁ_follow__mutmut_33": (
        "a missing reason read as 'XXXX' contains no 'fail' either"
    ),
}
