"""The Hub client: publishing folders (one commit per push, retried and resumable), mirroring hubs, listing a
repo's revisions. It shares only `hub_tools.repos` with the local hub, never imports it."""
