"""The shell grammar: tree-sitter-bash, with the one input transformation bash makes before it parses.

bash removes every unquoted backslash-newline pair while it reads its input (a *line continuation*), so
``r\\<newline>m x`` runs ``rm x``.  tree-sitter-bash treats the pair as whitespace instead, so gw removes the
pairs bash would remove -- outside single quotes, ANSI-C strings, comments and the bodies of quoted here-docs --
and parses the result again.  Everything else is the grammar's.
"""

from __future__ import annotations

import threading
from typing import Any

import tree_sitter
import tree_sitter_bash

#: Node types whose text bash reads without removing line continuations.
_VERBATIM = frozenset({"raw_string", "ansi_c_string", "comment"})

_local = threading.local()
_LANGUAGE = tree_sitter.Language(tree_sitter_bash.language())


def _parser() -> tree_sitter.Parser:
    # A tree-sitter parser is not safe to share between threads; one per thread costs a few kilobytes.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = tree_sitter.Parser(_LANGUAGE)
    return parser


def _quoted_heredoc(node: Any) -> bool:
    """A here-doc (its body or its redirect node) whose delimiter is quoted (``<<'EOF'``, ``<<"EOF"``,
    ``<<\\EOF``) is read verbatim."""
    redirect = node if node.type == "heredoc_redirect" else node.parent
    if redirect is None:
        return False
    for child in redirect.children:
        if child.type == "heredoc_start":
            return any(c in child.text for c in (b"'", b'"', b"\\"))
    return False


def _continuations(root: Any, source: bytes) -> list[int]:
    """Byte offsets of the backslash of every line continuation bash would remove."""
    out: list[int] = []
    start = 0
    while (i := source.find(b"\\\n", start)) >= 0:
        start = i + 2
        backslashes = 1
        while i - backslashes >= 0 and source[i - backslashes] == 0x5C:
            backslashes += 1
        if backslashes % 2 == 0:
            continue  # the backslash is itself escaped
        node = root.descendant_for_byte_range(i, i + 1)
        verbatim = False
        while node is not None:
            if node.type in _VERBATIM or (node.type == "heredoc_body" and _quoted_heredoc(node)):
                verbatim = True
                break
            node = node.parent
        if not verbatim:
            out.append(i)
    return out


def parse(source: bytes) -> tuple[Any, bytes]:
    """Parse a command line; returns the tree's root node and the bytes it was parsed from (the input with
    line continuations removed)."""
    parser = _parser()
    tree = parser.parse(source)
    cuts = _continuations(tree.root_node, source)
    if cuts:
        pieces = []
        last = 0
        for i in cuts:
            pieces.append(source[last:i])
            last = i + 2
        pieces.append(source[last:])
        source = b"".join(pieces)
        tree = parser.parse(source)
    return tree.root_node, source
