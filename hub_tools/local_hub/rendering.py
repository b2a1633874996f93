"""Markdown to HTML, safely: model cards and comments on pages and in discussion events.

Raw HTML in the Markdown is escaped, not passed through (a card or a comment must not run script in the pages),
and links keep markdown-it's check that refuses `javascript:` and other unsafe schemes.
"""

from markdown_it import MarkdownIt
from markupsafe import Markup

_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


def render_markdown(text: str) -> Markup:
    """`text` (Markdown) as HTML, with raw HTML escaped."""
    return Markup(_MARKDOWN.render(text or ""))
