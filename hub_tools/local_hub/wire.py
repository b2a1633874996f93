"""The plumbing every handler shares: the raw path, request bodies within a limit, paged answers.

Bodies are read as they stream in and refused with a 413 as soon as they pass the endpoint's limit (a declared
`Content-Length` over it is refused before a byte is read), so a request costs at most its limit in memory; an NDJSON
body is read a line at a time (`iter_lines`), each line within its own limit. JSON is parsed with nesting bounded
by the interpreter: a body nested deeper than that is a 400, not a 500.
"""

import json
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub_tools.local_hub.errors import HubError, bad_request


def raw_path(scope) -> str:
    """The request path as sent, still percent-encoded (revisions arrive `quote(x, safe="")`-encoded)."""
    return scope.get("raw_path", b"").decode("latin-1").split("?")[0] or scope["path"]


def base_url(request: Request) -> str:
    """The address the client reached the hub at, for the URLs it is sent back (no trailing slash)."""
    return str(request.base_url).rstrip("/")


def _check_declared(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HubError(413, f"Request body too large ({declared} bytes, limit {limit})")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with a 413 as soon as it passes `limit` bytes (declared or streamed)."""
    _check_declared(request, limit)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise HubError(413, f"Request body too large (limit {limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes | str, what: str = "body"):
    """`body` parsed as JSON; a 400 naming `what` when it is not JSON or nests deeper than the parser can go."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise bad_request(f"Malformed JSON {what}: {err}") from None
    except RecursionError:
        raise bad_request(f"Malformed JSON {what}: nested too deeply") from None


async def read_json(request: Request, limit: int, *, default: dict | None = None) -> dict:
    """The body as a JSON object; `default` for an empty body when given, else a 400."""
    body = await read_body(request, limit)
    if not body.strip():
        if default is not None:
            return default
        raise bad_request("Expected a JSON body")
    data = parse_json(body)
    if not isinstance(data, dict):
        raise bad_request("Expected a JSON object")
    return data


async def iter_lines(request: Request, limit: int, line_limit: int) -> AsyncIterator[bytes]:
    """The body's lines (without their newline) as they arrive: 413 past `limit` bytes, or a line past `line_limit`."""
    _check_declared(request, limit)
    total, pending = 0, bytearray()
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise HubError(413, f"Request body too large (limit {limit} bytes)")
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            yield bytes(pending[start:end])
            start = end + 1
        del pending[:start]
        if len(pending) > line_limit:
            raise HubError(413, f"A line of the request body is longer than {line_limit} bytes")
    if pending:
        yield bytes(pending)


async def drain(receive) -> None:
    """Read and drop what is left of a request body (so the connection can answer and stay usable)."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


def paginated(request: Request, items: list, *, page_size: int, render: Callable | None = None) -> Response:
    """One page of `items` from `?cursor=`, with `Link: <...>; rel="next"` when more follow (as the Hub pages).

    `render(item)` turns each item of the page (only those) into its JSON.
    """
    try:
        start = max(0, int(request.query_params.get("cursor", "0")))
    except ValueError:
        raise bad_request("Invalid cursor") from None
    page = items[start : start + page_size]
    if render is not None:
        page = [render(item) for item in page]
    headers = {}
    if start + page_size < len(items):
        params = dict(request.query_params)
        params["cursor"] = str(start + page_size)
        headers["Link"] = f'<{str(request.url).split("?")[0]}?{urlencode(params)}>; rel="next"'
    return JSONResponse(page, headers=headers)
