"""Spaces that run: placeholder, filled in below."""


class SpaceRunner:
    def status(self, repo_id: str):
        return None

    def changed(self, repo) -> None:
        return None

    def stop(self, repo_id: str) -> None:
        return None
