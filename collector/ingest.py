"""POST /api/v1/batches: authenticate, bound, decompress, validate, deduplicate, commit, then acknowledge."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import zlib
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from checks.model import Batch, WireError

from collector.auth import agent_names_for, bearer
from collector.http import json_error, json_response
from collector.writer import DUPLICATE, Overloaded

if TYPE_CHECKING:
    from collector.core import Core

log = logging.getLogger("collector.ingest")

#: decode batches on the store's writer thread (one Python thread does all per-sample work: no GIL
#: ping-pong between the event loop and the writer); False decodes on the event loop
DECODE_ON_WRITER = os.environ.get("INFRAWATCH_DECODE_ON_LOOP", "") == ""


class Refused(Exception):
    """The token may not send this batch (its agent name)."""


_UA_RE = re.compile(r"infrawatch-agent/([\w.+-]+)")


def _reject(core: "Core", reason: str, status: int, message: str, **kw: object) -> web.Response:
    core.stats.rejected[reason] += 1
    return json_error(status, message, **kw)


def _inflate(body: bytes, limit: int) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(body, limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise OverflowError
    if not d.eof:
        raise zlib.error("truncated gzip stream")
    return out


async def post_batches(request: web.Request) -> web.Response:
    from collector.app import CORE

    core = request.app[CORE]
    st = core.stats
    st.requests += 1
    tok = bearer(request)
    if tok is None:
        return _reject(core, "auth", 401, "missing bearer token (Authorization: Bearer <agent token>)")
    names = agent_names_for(core, tok)
    if names is None:
        return _reject(core, "auth", 401, "unknown agent token")
    limit = core.cfg.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return _reject(core, "too_large", 413, f"body of {request.content_length} bytes exceeds max_body_bytes ({limit})", max_body_bytes=limit)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _reject(core, "too_large", 413, f"body exceeds max_body_bytes ({limit})", max_body_bytes=limit)
    except RequestPayloadError as e:  # e.g. Content-Encoding: gzip on a body that is not gzip (aiohttp inflates it)
        return _reject(core, "bad_encoding", 400, f"cannot read the body: {str(e).replace(chr(10), ' ').strip()}")
    st.bytes += len(body)
    enc = request.headers.get("Content-Encoding", "").strip().lower()
    if enc == "gzip" and body[:2] == b"\x1f\x8b":  # aiohttp normally inflates gzip bodies itself (within client_max_size)
        try:
            body = _inflate(body, limit)
        except OverflowError:
            return _reject(core, "too_large", 413, f"decompressed body exceeds max_body_bytes ({limit})", max_body_bytes=limit)
        except zlib.error as e:
            return _reject(core, "bad_encoding", 400, f"body is not valid gzip: {e}")
    elif enc not in ("", "identity", "gzip", "deflate"):
        return _reject(core, "bad_encoding", 415, f"unsupported Content-Encoding {enc!r} (gzip or none)")
    ua = request.headers.get("User-Agent", "")
    m = _UA_RE.search(ua)
    version = request.headers.get("X-Infrawatch-Agent-Version") or (m.group(1) if m else None)
    assert core.store is not None

    def check(batch: Batch) -> None:
        if "*" not in names and batch.agent not in names:
            raise Refused(f"this token may not send as agent {batch.agent!r}")

    try:
        if DECODE_ON_WRITER:
            item = core.store.writer.submit_raw(body, None, check, version=version)
            fut = item.future
        else:
            w = core.store.writer
            try:
                batch, rows, gen = w.decode(body)
            except WireError as e:
                return _reject(core, "schema" if e.path else "json", 400, f"invalid batch: {e}", field=e.path)
            try:
                check(batch)
            except Refused as e:
                return _reject(core, "auth", 403, str(e), field="agent")
            w.json_rows = True
            fut = w.submit_decoded(batch, body, rows, gen, version=version)
    except Overloaded as e:
        ra = max(1, int(e.retry_after + 0.5))
        return _reject(core, "overloaded", 503, str(e), headers={"Retry-After": str(ra)})
    try:
        res = await asyncio.shield(asyncio.wrap_future(fut))
    except WireError as e:
        return _reject(core, "schema" if e.path else "json", 400, f"invalid batch: {e}", field=e.path)
    except Refused as e:
        return _reject(core, "auth", 403, str(e), field="agent")
    except Exception as e:  # noqa: BLE001
        return _reject(core, "store_error", 500, f"could not store the batch: {type(e).__name__}: {e}")
    if DECODE_ON_WRITER:
        batch = item.batch  # type: ignore[assignment]
        ns, ne = item.samples, item.events
    else:
        ns, ne = len(rows) if rows is not None else len(batch.samples), len(batch.events)
    if res == DUPLICATE:
        st.duplicates += 1
        return json_response({"status": "duplicate", "batch_id": batch.batch_id})
    st.batches += 1
    st.samples += ns
    st.events += ne
    if core.extensions:
        core.spawn_after_commit(batch)
    return json_response({"status": "stored", "batch_id": batch.batch_id, "samples": ns, "events": ne})
