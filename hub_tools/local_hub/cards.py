"""A README's front matter: the YAML between its first two `---` lines, read safely.

Card metadata comes from anyone who can commit, and anonymous requests read it back (repo info's `cardData`,
listings' tags, the pages), so it is parsed with a loader that refuses what makes YAML expensive: aliases (a
377-byte "billion laughs" card expands to gigabytes) and nesting deeper than `MAX_DEPTH` (which would exhaust the
stack), and the front matter is capped at `MAX_FRONT_MATTER` bytes. `load_yaml` is that loader; the store of issue
14 and the card rules of `metadata.py` both use it.
"""

import re

import yaml

_FRONT_MATTER_RE = re.compile(r"^---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|$)", re.S)
MAX_DEPTH = 64  # nesting levels of mappings and sequences; real cards (model-index) use 6
MAX_FRONT_MATTER = 1024 * 1024  # bytes of YAML between the `---` lines


class InvalidMetadata(Exception):
    """A README front matter that is not valid YAML, not a mapping, or breaks one of the Hub's rules."""


class _SafeNoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader (pure Python: its composer can be bounded) without aliases, and with a depth cap."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise InvalidMetadata(
                f"Invalid YAML: aliases are not allowed (*{event.anchor} on line {event.start_mark.line + 1}); "
                "write the value out"
            )
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise InvalidMetadata(
                f"Invalid YAML: nested more than {MAX_DEPTH} levels deep (line {mark.line + 1}); flatten the metadata"
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str):
    """The YAML document in `text`, loaded safely (no aliases, at most `MAX_DEPTH` levels); InvalidMetadata else."""
    if len(text.encode("utf-8", "replace")) > MAX_FRONT_MATTER:
        raise InvalidMetadata(f"Invalid YAML: the metadata is larger than {MAX_FRONT_MATTER} bytes")
    try:
        return yaml.load(text, Loader=_SafeNoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise InvalidMetadata(f"Invalid YAML: {err}") from None
    except RecursionError:
        raise InvalidMetadata("Invalid YAML: nested too deeply") from None


def read_front_matter(text: str) -> tuple[bool, dict | None]:
    """(whether `text` has front matter, its YAML mapping or None when empty); InvalidMetadata otherwise."""
    match = _FRONT_MATTER_RE.match(text)
    if not match:
        return False, None
    data = load_yaml(match.group(1))
    if data is not None and not isinstance(data, dict):
        raise InvalidMetadata("The metadata must be a YAML mapping")
    return True, data
