"""From a response body to a model: the one way every answer is read."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from exporter.cce.errors import ResponseParseError
from exporter.memory import gc_paused

M = TypeVar("M", bound=BaseModel)

#: Responses at least this large are validated with the cyclic garbage collector paused.
GC_PAUSE_BYTES = 32 * 1024


def parse_response(model: type[M], payload: bytes | str, *, endpoint: str | None = None) -> M:
    """Validate a whole JSON response into ``model``.

    Raises :class:`ResponseParseError` (and nothing else) for invalid JSON, a top level that is not
    an object, or any shape the model refuses; it names the model (its ``title``, if it has one).
    """
    name = model.model_config.get("title") or model.__name__
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes | bytearray) else payload
        # Top level must be an object; checking the first character spares a second parse.
        if not text.lstrip().startswith("{"):
            raise ResponseParseError("response is not a JSON object", endpoint=endpoint)
        if len(text) < GC_PAUSE_BYTES:
            return model.model_validate_json(text)
        with gc_paused():
            return model.model_validate_json(text)
    except ResponseParseError:
        raise
    except UnicodeDecodeError as exc:
        raise ResponseParseError(
            f"response is not UTF-8: {exc.reason}", endpoint=endpoint
        ) from None
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[:1]
        detail = first[0]["msg"] if first else "invalid"
        where = ".".join(str(p) for p in first[0]["loc"]) if first and first[0]["loc"] else ""
        raise ResponseParseError(
            f"malformed {name} response{' at ' + where if where else ''}: {detail}",
            endpoint=endpoint,
        ) from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise ResponseParseError(
            f"malformed {name} response: {type(exc).__name__}", endpoint=endpoint
        ) from None
