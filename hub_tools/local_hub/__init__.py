"""The offline hub: a Hub-compatible server the real clients reach through HF_ENDPOINT, and a git server.

`server.start_background(root, tokens=[...])` runs it in a thread (tests, demos; `faults=True` adds the
fault-injection harness of `faults.py`); `server.serve` runs it in the foreground (`babyhub hub serve`).
`app.py` authenticates, bounds each request and routes it to a handler in `handlers/` (repos and refs, files,
uploads and commits); `githttp.py` serves git (clone, fetch, push) and the LFS batch API and transfers;
`errors.py` gives every error the Hub's shape. The store is `gitstore.GitStore`: every repo a bare git repository
(`gittrees.py`, `gitplumbing.py`), LFS content in a content-addressed pool (`lfs.py`, the one LFS rule);
`migrate.py` turns a root of the old JSON store into that on open, `maintenance.py` checks (`fsck`) and cleans
(`gc`) a root. Names (repo ids, types, refs) follow `hub_tools.repos`, as the client's do; this package never
imports the client (`hub_tools.hub.publish`, `hub_tools.hub.sync`), nor the client this one.
"""
