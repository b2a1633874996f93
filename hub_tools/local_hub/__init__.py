"""The offline hub: a Hub-compatible server the real clients reach through HF_ENDPOINT.

`server.start_background(root, tokens=[...])` runs it in a thread (tests, demos); `babyhub hub serve` runs it
in the foreground; `storage` keeps repos, commits, refs and content-addressed blobs under the root.
"""
