"""From an HTTP answer to a model, off the event loop when it is large.

:func:`read_body` reads a raw answer under a size cap and inflates ``gzip``/``deflate`` under the
same cap; :func:`parse_body` parses it (in a worker thread when it is large, with the response
memo, dropping a list's unreadable objects rather than the whole list).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

import httpx
from pydantic import BaseModel

from exporter.cce.endpoints import ADDONS, CLUSTERS, NODEPOOLS, NODES
from exporter.cce.errors import ResponseParseError
from exporter.cce.memo import Memo, body_digest
from exporter.cce.models import Addon, Cluster, Node, NodePool
from exporter.cce.salvage import salvage_list
from exporter.limits import CompressedBodyError, inflate, read_capped

#: Responses at least this large are parsed in a worker thread, so that the event loop keeps
#: serving scrapes and other targets' calls (docs/performance.md: sizes of node lists).
THREAD_PARSE_BYTES = 64 * 1024

#: The one thread large responses are parsed in. One, not a pool: parsing holds the GIL, and
#: the event loop gets the interpreter back from one other runnable thread half the time, but
#: from six only a seventh of it (docs/performance.md has the waits measured at 500 clusters).
_PARSER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="cce-parse")
#: The one thread large compressed answers are inflated in (zlib releases the GIL meanwhile).
_INFLATER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="cce-inflate")

#: Compressed bodies at least this large are inflated in a worker thread: gzip inflates up to a
#: thousandfold, so 8 kB may be 8 MB of output.
THREAD_INFLATE_BYTES = 8 * 1024

R = TypeVar("R")

#: List endpoints whose answers are salvaged object by object when the whole list cannot be read.
_LIST_ITEMS: dict[str, type[BaseModel]] = {
    CLUSTERS: Cluster,
    NODES: Node,
    NODEPOOLS: NodePool,
    ADDONS: Addon,
}


async def parse_body(
    content: bytes,
    parse: Callable[[bytes], R],
    *,
    memo: Memo[R] | None = None,
    template: str | None = None,
) -> R:
    """``parse`` a body: in a worker thread when it is large, so that the event loop keeps
    serving scrapes and other calls meanwhile. With ``memo``, a body identical to the last
    one is not parsed again. ``template``: the endpoint, for a list whose bad objects are
    dropped rather than failing it whole."""
    digest = None
    if memo is not None:
        digest = body_digest(content)
        known = memo.recall(digest)
        if known is not None:
            return known
    item_model = _LIST_ITEMS.get(template) if template is not None else None
    if item_model is not None and template is not None:
        strict = parse

        def parse(content: bytes) -> R:
            try:
                return strict(content)
            except ResponseParseError as original:
                # One bad object must not cost the whole list: drop it, keep the others.
                try:
                    cleaned = salvage_list(content, item_model, endpoint=template)
                except ResponseParseError:
                    raise original from None  # not a list with a bad object in it
                return strict(cleaned)

    if len(content) >= THREAD_PARSE_BYTES:
        loop = asyncio.get_running_loop()
        value = await loop.run_in_executor(_PARSER, parse, content)
    else:
        value = parse(content)
    if memo is not None and digest is not None:
        value = memo.keep(digest, value)
    return value


async def read_body(response: httpx.Response, limit: int) -> None:
    """Read the raw answer (at most ``limit`` bytes) and decode its
    ``Content-Encoding`` here, under the same cap; the result becomes ``response.content``.

    Raises :class:`CompressedBodyError` for a body past the cap, corrupt or in a coding
    not asked for."""
    if response.is_stream_consumed:
        # Handed over read already (test transports): nothing is left to bound or decode.
        if len(response.content) > limit:
            raise _too_large(limit)
        return
    raw = await read_capped(response.aiter_raw(), limit, lambda: _too_large(limit))
    coding = response.headers.get("content-encoding", "").strip().lower()
    if coding in ("", "identity") or not raw:
        body = raw
    elif len(raw) >= THREAD_INFLATE_BYTES:
        # A large compressed body is inflated off the event loop: scrapes and health checks
        # keep being served meanwhile.
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(_INFLATER, inflate, raw, coding, limit)
    else:
        body = inflate(raw, coding, limit)
    response._content = body


def _too_large(limit: int) -> CompressedBodyError:
    return CompressedBodyError(f"the answer is larger than {limit} bytes; refused", too_large=True)
