"""A griffe extension for the API reference: the docstrings' Sphinx roles (``:class:`~a.B```,
``:func:``, ``:meth:``, ``:mod:``, ``:attr:``), which mkdocstrings does not read, shown as code
(``B``; the full path without ``~``) instead of as raw text."""
from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|obj):`(~?)([^`]+)`")


def _as_code(match: re.Match) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring once, when its object is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_as_code, obj.docstring.value)
