"""The plumbing every handler shares: the raw path, request bodies within a limit, paged answers."""

import json
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


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with a 413 as soon as it passes `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HubError(413, f"Request body too large ({declared} bytes, limit {limit})")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise HubError(413, f"Request body too large (limit {limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int, *, default: dict | None = None) -> dict:
    """The body as a JSON object; `default` for an empty body when given, else a 400."""
    body = await read_body(request, limit)
    if not body.strip():
        if default is not None:
            return default
        raise bad_request("Expected a JSON body")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise bad_request(f"Malformed JSON body: {err}") from None
    if not isinstance(data, dict):
        raise bad_request("Expected a JSON object")
    return data


async def drain(receive) -> None:
    """Read and drop what is left of a request body (so the connection can answer and stay usable)."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


def paginated(request: Request, items: list, *, page_size: int) -> Response:
    """One page of `items` from `?cursor=`, with `Link: <...>; rel="next"` when more follow (as the Hub pages)."""
    try:
        start = max(0, int(request.query_params.get("cursor", "0")))
    except ValueError:
        raise bad_request("Invalid cursor") from None
    page = items[start : start + page_size]
    headers = {}
    if start + page_size < len(items):
        params = dict(request.query_params)
        params["cursor"] = str(start + page_size)
        headers["Link"] = f'<{str(request.url).split("?")[0]}?{urlencode(params)}>; rel="next"'
    return JSONResponse(page, headers=headers)
