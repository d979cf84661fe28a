"""``ast.parse`` for the static checks, safe beside threads that print tracebacks.

CPython 3.11 before 3.11.8 keeps the AST constructor's recursion count per interpreter
(gh-106905): a traceback printed by another thread meanwhile (3.11 parses source lines for its
carets) makes a correct parse raise ``SystemError: AST constructor recursion depth mismatch``.
That error says nothing about the source, so the parse is simply done again.
"""

from __future__ import annotations

import ast

_RACE = "AST constructor recursion depth mismatch"


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    """The module's tree; a parse spoiled by the interpreter's race is repeated (at most 5 times)."""
    for attempt in range(5):
        try:
            return ast.parse(source, filename)
        except SystemError as error:
            if _RACE not in str(error) or attempt == 4:
                raise
    raise AssertionError("unreachable")
