"""The local hub's endpoints, by concern; `hub_tools.local_hub.app` routes requests to them.

Every handler is `async def handler(hub, request, **route_params) -> Response`: `hub` is the `LocalHub` (its
store, authentication and limits), the route params are what the path named (`repo_type`, `repo_id`,
`revision`, `path`, `oid`), already percent-decoded.

- `repos`: repos (create, delete, settings, listing, info), refs (branches, tags), commit history, whoami;
- `files`: reading files: resolve (downloads, ranges, gates), tree listings, paths-info, last commits;
- `uploads`: writing: preupload, the LFS batch and upload, commits (and pull requests opened by them), validate-yaml;
- `discussions`: discussions and pull requests: listing, details, comments, status, merges;
- `manage`: move, duplicate, super-squash, a user's repos (`hf repos ls`), the Xet endpoints, a Space's runtime;
- `pages`: the web pages (templates in `../templates/`) and signing in.
"""
