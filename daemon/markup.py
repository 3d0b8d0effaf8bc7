"""Hovers in the client's format: the daemon writes them in Markdown; a client whose
`textDocument.hover.contentFormat` does not list markdown (eglot without markdown-mode, the LSP
default when the capability is absent) gets them as plain text, without `**` and backticks."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from int8wb.daemon.server import Int8Server

EMPHASIS = re.compile(r"\*\*(.+?)\*\*")
CODE = re.compile(r"`([^`\n]*)`")


def wants_markdown(ls: Int8Server) -> bool:
    document = ls.client_capabilities.text_document
    hover = document.hover if document else None
    return bool(hover and hover.content_format and types.MarkupKind.Markdown in hover.content_format)


def plain(markdown: str) -> str:
    return CODE.sub(r"\1", EMPHASIS.sub(r"\1", markdown))


def hover_of(ls: Int8Server, markdown: str, line: int, length: int) -> types.Hover:
    """A hover on the whole of line `line` (`length` characters long)."""
    content = (types.MarkupContent(kind=types.MarkupKind.Markdown, value=markdown) if wants_markdown(ls) else
               types.MarkupContent(kind=types.MarkupKind.PlainText, value=plain(markdown)))
    return types.Hover(contents=content, range=types.Range(start=types.Position(line, 0),
                                                           end=types.Position(line, length)))
