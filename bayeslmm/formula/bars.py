"""Find the random-effect bars of an lme4 formula and expand ``||`` and ``a/b``.

formulae splits every bar into one term per left-hand column, which loses the
correlation structure, and does not know ``||``.  So the bars are found here,
in the formula text, and each becomes one :class:`RandomBar`; the fixed part is
handed to formulae unchanged.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from bayeslmm.errors import LMMError


@dataclass(frozen=True)
class RandomBar:
    """One ``(lhs | group)`` term after expansion: its columns share one covariance."""

    lhs: str  # formula text of the left-hand side, e.g. "1 + Days", "0 + x"
    group: tuple[str, ...]  # grouping variables; several mean their interaction
    group_name: str  # lme4's label, e.g. "Subject", "cask:batch"


@dataclass(frozen=True)
class ParsedFormula:
    text: str
    response: str
    fixed: str  # right-hand side of the fixed part, for formulae
    bars: tuple[RandomBar, ...]
    offsets: tuple[str, ...] = ()  # the expression inside each top-level offset(...)


def parse_formula(text: str) -> ParsedFormula:
    """Split ``text`` into response, fixed right-hand side and expanded bars."""
    if not isinstance(text, str) or not text.strip():
        raise LMMError("formula must be a non-empty string such as 'y ~ x + (1 | g)'")
    _check_parentheses(text)
    if text.count("~") != 1:
        raise LMMError(
            f"formula {text!r} must have exactly one '~' separating the response "
            "from the predictors, e.g. 'Reaction ~ Days + (Days | Subject)'"
        )
    response, rhs = (part.strip() for part in text.split("~"))
    if not response:
        raise LMMError(f"formula {text!r} has no response on the left of '~'")
    if not rhs:
        raise LMMError(f"formula {text!r} has nothing on the right of '~'; use '~ 1' for an intercept")
    fixed_parts, bars, offsets = [], [], []
    for summand in _split_top_level(rhs, "+"):
        bar = _as_bar(summand, text)
        if bar is not None:
            bars.extend(_expand_bar(*bar, formula=text))
        elif _offset_argument(summand) is not None:
            offsets.append(_offset_argument(summand))
        else:
            _refuse_hidden_bar(summand, text)
            fixed_parts.append(summand)
    _refuse_nested_offsets([*fixed_parts, *(bar.lhs for bar in bars)], text)
    fixed = " + ".join(fixed_parts) if fixed_parts else "1"
    return ParsedFormula(text=text, response=response, fixed=fixed, bars=tuple(bars), offsets=tuple(offsets))


_OFFSET = re.compile(r"^offset\s*\(")
_OFFSET_ANYWHERE = re.compile(r"(?<![\w.])offset\s*\(")


def _offset_argument(summand: str) -> str | None:
    """``'offset(log(e))'`` → ``'log(e)'``; a summand that is not one whole offset call → None."""
    if not _OFFSET.match(summand):
        return None
    call = summand[summand.index("(") :]
    return call[1:-1].strip() if _matching_close(call) == len(call) - 1 else None


def _refuse_hidden_bar(summand: str, formula: str) -> None:
    """A '|' outside a parenthesised bar: R reads ``y ~ x + 1 | g`` with '|' binding loosest,
    Python's operators would not; rather than guess, ask for the parentheses."""
    if "|" in summand:
        raise LMMError(
            f"the term {summand!r} in {formula!r} has a '|' outside a parenthesised random-effect term; "
            "write every random-effect term in its own parentheses, e.g. 'y ~ x + (x | g)' "
            "or 'y ~ x + (1 | g) + (0 + arm | g)'"
        )


def _refuse_nested_offsets(parts: list[str], formula: str) -> None:
    for part in parts:
        if _OFFSET_ANYWHERE.search(part):
            raise LMMError(
                f"offset(...) appears inside {part!r} in {formula!r}; an offset must be a term of its own "
                "in the fixed part, e.g. 'y ~ x + offset(log(exposure)) + (1 | g)' (lme4 allows no offset "
                "inside a random-effect term or an interaction)"
            )


def _check_parentheses(text: str) -> None:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            raise LMMError(f"formula {text!r} has a ')' without a matching '('")
    if depth:
        raise LMMError(f"formula {text!r} has {depth} unclosed '('")


def _split_top_level(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses and braces; empty pieces are dropped."""
    pieces, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "({[":
            depth += 1
        elif char in ")}]":
            depth -= 1
        elif char == sep and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    return [p.strip() for p in pieces if p.strip()]


def _as_bar(summand: str, formula: str) -> tuple[str, str, bool] | None:
    """``'(x || g)'`` → ``('x', 'g', True)``; a summand that is no bar → None."""
    if not (summand.startswith("(") and _matching_close(summand) == len(summand) - 1):
        return None
    inner = summand[1:-1]
    bars = _top_level_positions(inner, "|")
    if not bars:
        return None
    double = len(bars) == 2 and bars[1] == bars[0] + 1
    if len(bars) > 1 and not double:
        _bad_bar(summand, formula)
    lhs, group = inner[: bars[0]].strip(), inner[bars[-1] + 1 :].strip()
    if not lhs or not group:
        _bad_bar(summand, formula)
    return lhs, group, double


def _top_level_positions(text: str, char: str) -> list[int]:
    depth, found = 0, []
    for i, c in enumerate(text):
        depth += {"(": 1, ")": -1}.get(c, 0)
        if c == char and depth == 0:
            found.append(i)
    return found


def _bad_bar(summand: str, formula: str) -> None:
    raise LMMError(
        f"random-effect term {summand!r} in {formula!r} is malformed; write it as "
        "'(lhs | group)', e.g. '(1 | g)', '(x | g)', '(0 + x | g)', '(x || g)' or '(1 | a/b)'"
    )


def _matching_close(text: str) -> int:
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return i
    return -1


def _expand_bar(lhs: str, group: str, double: bool, formula: str) -> list[RandomBar]:
    groups = _expand_groups(group, formula)
    lhs_parts = _expand_double_vert(lhs) if double else [lhs]
    return [RandomBar(part, g, ":".join(g)) for g in groups for part in lhs_parts]


_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")
_QUOTED_NAME = re.compile(r"""^(?:`([^`]+)`|Q\(\s*"([^"]+)"\s*\)|Q\(\s*'([^']+)'\s*\))$""")


def _expand_groups(group: str, formula: str) -> list[tuple[str, ...]]:
    """``a/b/c`` → ``[(a,), (b, a), (c, b, a)]`` (lme4 labels them a, b:a, c:b:a)."""
    chain = [tuple(_group_name(name, group, formula) for name in piece.split(":")) for piece in group.split("/")]
    expanded, outer = [], ()
    for piece in chain:
        outer = piece + outer
        expanded.append(outer)
    return expanded


def _group_name(text: str, group: str, formula: str) -> str:
    """A grouping column's name: plain, in backticks or in ``Q("...")``."""
    text = text.strip()
    quoted = _QUOTED_NAME.match(text)
    if quoted:
        return next(name for name in quoted.groups() if name)
    if not _NAME.match(text):
        raise LMMError(
            f"grouping factor {group!r} in {formula!r} must be column names joined by "
            "':' (interaction) or '/' (nesting), e.g. '(1 | school/class)'; quote a name with "
            "spaces as `my group` or Q(\"my group\")"
        )
    return text


def _expand_double_vert(lhs: str) -> list[str]:
    """lme4's expandDoubleVerts: ``(1 + x || g)`` → ``(1 | g) + (0 + x | g)``."""
    terms = _split_top_level(lhs, "+")
    has_intercept = not any(t in ("0", "-1") for t in terms) and not lhs.replace(" ", "").endswith("-1")
    slopes = [t for t in terms if t not in ("0", "1", "-1")]
    parts = ["1"] if has_intercept else []
    return parts + [f"0 + {t}" for t in slopes]
