"""A README's front matter: the YAML between its first two `---` lines, read safely.

Anyone who can commit writes card metadata, and anonymous requests read it back (repo info's `cardData`), so it is
parsed with a loader that refuses what makes YAML expensive: aliases (a 377-byte "billion laughs" card expands to
gigabytes, a recursive one never ends) and nesting deeper than `MAX_DEPTH` (which would exhaust the stack); the
front matter is capped at `MAX_FRONT_MATTER` bytes. A commit whose README breaks these rules is refused (a 400, as
the Hub refuses invalid metadata), so a stored card is one that loads.
"""

import re

import yaml

_FRONT_MATTER_RE = re.compile(r"^---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|$)", re.S)
MAX_DEPTH = 64  # nesting levels of mappings and sequences; real cards (model-index) use about 6
MAX_FRONT_MATTER = 1024 * 1024  # bytes of YAML between the `---` lines


class InvalidMetadata(Exception):
    """A README front matter that is not valid YAML, not a mapping, or that uses aliases or nests too deep."""


class _SafeNoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader (the pure-Python composer, which can be bounded) without aliases, with a depth cap."""

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
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise InvalidMetadata(
                    f"Invalid YAML: nested more than {MAX_DEPTH} levels deep (line {mark.line + 1}); flatten it"
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str):
    """The YAML document in `text`, loaded safely (no aliases, at most `MAX_DEPTH` levels); else InvalidMetadata."""
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
