"""An mkdocs hook: ``\\|`` inside a code span of a table cell is shown as ``|``.

GitHub needs the escape in the README's tables (``(1 \\| g)``); Python-Markdown does not split
cells at a pipe inside a code span and shows the backslash. The README's sections are included in
the site (pymdownx.snippets, after the markdown hooks run), so the rendered cells are unescaped."""
from __future__ import annotations

import re

CELL = re.compile(r"<td>.*?</td>", re.S)
CODE = re.compile(r"<code>[^<]*</code>")


def on_page_content(html: str, **kwargs) -> str:
    return CELL.sub(lambda cell: CODE.sub(lambda code: code.group(0).replace("\\|", "|"), cell.group(0)), html)
