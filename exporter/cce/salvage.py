"""Keep a list answer when one of its objects cannot be read.

The fast parsers read a whole list at once and refuse it for one bad object: a lone surrogate
(``"\\ud800"``) in a name is invalid text to them, and an object of a shape the model refuses
fails the list. :func:`salvage_list` is the slow path taken only then: the body is read with
Python's lenient JSON decoder, each object is checked on its own (its text must be valid
Unicode, and the model must accept it), the bad ones are dropped, counted
(``cce_exporter_objects_dropped_total``) and named in one WARNING, and the rest is written back
as JSON for the fast parser.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import BaseModel, ValidationError

from exporter.cce.errors import ResponseParseError
from exporter.limits import count_dropped

__all__ = ["salvage_list"]

log = logging.getLogger(__name__)


def _bad_text(value: Any, path: str = "") -> str | None:
    """The path of the first string (key or value) that is not valid Unicode, or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "value"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str):
                try:
                    key.encode("utf-8")
                except UnicodeEncodeError:
                    return path or "key"
            found = _bad_text(item, where)
            if found is not None:
                return found
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _bad_text(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _problem(item: Any, model: type[BaseModel]) -> str | None:
    if not isinstance(item, dict):
        return None  # the models skip non-objects themselves
    where = _bad_text(item)
    if where is not None:
        return f"invalid text at {where[:80]}"
    try:
        model.model_validate(item)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[:1]
        loc = ".".join(str(p) for p in first[0]["loc"]) if first else ""
        return f"refused by the model at {loc[:80] or 'top level'}"
    except (ValueError, TypeError, RecursionError) as exc:
        return f"unreadable ({type(exc).__name__})"
    return None


def salvage_list(content: bytes, model: type[BaseModel], *, endpoint: str) -> bytes:
    """``content`` without the objects of its ``items`` list that cannot be read.

    Raises :class:`ResponseParseError` when the body is not a JSON object with an ``items`` list
    (then there is nothing to salvage) or when no object was found bad (the fault is elsewhere).
    """
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ResponseParseError("response is not valid JSON", endpoint=endpoint) from None
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ResponseParseError("response is not a readable list", endpoint=endpoint)
    kept: list[Any] = []
    dropped: list[str] = []
    for index, item in enumerate(items):
        problem = _problem(item, model)
        if problem is None:
            kept.append(item)
        else:
            dropped.append(f"item {index}: {problem}")
    top_problem = _bad_text({k: v for k, v in data.items() if k != "items"})
    if top_problem is not None:
        raise ResponseParseError(f"invalid text at {top_problem[:80]}", endpoint=endpoint)
    if not dropped:
        raise ResponseParseError("the list could not be read", endpoint=endpoint)
    count_dropped(endpoint, len(dropped))
    log.warning(
        "dropped %d of %d objects from the answer of %s, kept the others: %s",
        len(dropped),
        len(items),
        endpoint,
        "; ".join(dropped[:5]) + (f"; and {len(dropped) - 5} more" if len(dropped) > 5 else ""),
        extra={"endpoint": endpoint},
    )
    data["items"] = kept
    return json.dumps(data, ensure_ascii=False).encode("utf-8")
