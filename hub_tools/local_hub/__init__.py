"""The offline hub: a Hub-compatible server the real clients reach through HF_ENDPOINT.

`server.start_background(root, tokens=[...])` runs it in a thread (tests, demos; `faults=True` adds the
fault-injection harness of `faults.py`); `server.serve` runs it in the foreground (`babyhub hub serve`).
`app.py` authenticates and routes each request to a handler in `handlers/` (repos and refs, files, uploads and
commits); `errors.py` gives every error the Hub's shape; `storage.py` keeps repos, commits, refs and
content-addressed blobs under the root. Names (repo ids, types, refs) follow `hub_tools.repos`, as the client's
do; this package never imports the client (`hub_tools.hub.publish`, `hub_tools.hub.sync`), nor the client this one.
"""
