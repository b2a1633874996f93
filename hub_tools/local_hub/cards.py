"""A README's front matter: the YAML between its first two `---` lines (repo info's cardData, validate-yaml)."""

import re

import yaml

_FRONT_MATTER_RE = re.compile(r"^---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|$)", re.S)


class InvalidMetadata(Exception):
    """A README front matter that is not valid YAML, or not a mapping."""


def read_front_matter(text: str) -> tuple[bool, dict | None]:
    """(whether `text` has front matter, its YAML mapping or None when empty); InvalidMetadata otherwise."""
    match = _FRONT_MATTER_RE.match(text)
    if not match:
        return False, None
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        raise InvalidMetadata(f"Invalid YAML: {err}") from None
    if data is not None and not isinstance(data, dict):
        raise InvalidMetadata("The metadata must be a YAML mapping")
    return True, data
