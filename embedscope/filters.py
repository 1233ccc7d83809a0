"""Safe metadata filters: `year >= 2000 and categories contains 'Fiction'`.

The expression is parsed with Python's own `ast` (so precedence, quoting and parentheses work as
people expect) and only a whitelist of nodes is evaluated: comparisons of a field with literals,
`and`/`or`/`not`, `in [...]`, and `contains`/`startswith` written as `field contains 'x'`. Nothing
is ever `eval`-ed. Evaluation is vectorised over a pandas frame of metadata.

Every failure is an `EmbedscopeError` in one line (a 400 over HTTP, `error:` in the CLI): a filter is
at most MAX_CHARS characters and MAX_DEPTH levels deep, because the evaluator and `ast` recurse and an
attacker controls the expression; literals must be scalars (a list literal only after `in`).
"""

from __future__ import annotations

import ast
import io
import operator
import tokenize
from typing import Any

import numpy as np
import pandas as pd

from embedscope.errors import EmbedscopeError

MAX_CHARS = 2000  # a filter is a line a person writes; the HTTP models use the same bound
MAX_DEPTH = 32  # nesting of the parsed expression; `a and (b or (c ...))` needs a handful
_CMP = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_WORD_OPS = ("contains", "startswith")
_SCALAR = (str, int, float, bool, type(None))
_EXAMPLE = "write e.g. \"year >= 2000 and categories contains 'Fiction'\""


def _rewrite(expr: str) -> str:
    """Rewrite the two word operators and `=` on the token stream, so string literals are never touched.

    `f contains 'x'` -> `f.contains('x')` would allow attribute calls; a marker operator is used
    instead: `f @ 'contains' @ 'x'` is parsed as a matmul BinOp that `_eval` recognises. A lone `=`
    becomes `==` (people write `genre = 'x'`). `tokenize` is Python's own lexer, so quotes and
    escapes inside literals are understood exactly as `ast` will understand them."""
    out: list[tuple[int, str]] = []
    for tok in tokenize.generate_tokens(io.StringIO(expr).readline):
        if tok.type == tokenize.NAME and tok.string in _WORD_OPS:
            out += [(tokenize.OP, "@"), (tokenize.STRING, repr(tok.string)), (tokenize.OP, "@")]
        elif tok.type == tokenize.OP and tok.string == "=":
            out.append((tokenize.OP, "=="))
        else:
            out.append((tok.type, tok.string))
    return tokenize.untokenize(out)


def _depth(tree: ast.AST) -> int:
    """Nesting depth, walked with an explicit stack (a recursive walk is what a deep filter breaks)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return deepest


def parse_filter(expr: str) -> ast.Expression:
    expr = expr.strip()
    if not expr:
        raise EmbedscopeError("empty filter")
    if len(expr) > MAX_CHARS:
        raise EmbedscopeError(f"filter too long: {len(expr):,} characters, the limit is {MAX_CHARS:,}")
    shown = expr if len(expr) <= 120 else expr[:117] + "..."
    try:
        tree = ast.parse(_rewrite(expr), mode="eval")
    except (SyntaxError, tokenize.TokenError, ValueError):
        raise EmbedscopeError(f"malformed filter {shown!r}; {_EXAMPLE}") from None
    except (RecursionError, MemoryError):
        raise EmbedscopeError(f"filter too deeply nested (the limit is {MAX_DEPTH} levels)") from None
    if _depth(tree) > MAX_DEPTH:
        raise EmbedscopeError(f"filter too deeply nested (the limit is {MAX_DEPTH} levels): {shown!r}")
    return tree


def fields_in(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def _literal(node: ast.AST, *, allow_list: bool = False) -> Any:
    """A literal value: a scalar, or (after `in`) a flat list/tuple/set of scalars."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise EmbedscopeError(f"filter: expected a literal value, got {ast.unparse(node)!r}") from None
    if allow_list and isinstance(value, list | tuple | set):
        if not all(isinstance(v, _SCALAR) for v in value):
            raise EmbedscopeError(
                f"filter: `in` needs a list of plain values (strings, numbers), got {ast.unparse(node)!r}"
            )
        return value
    if not isinstance(value, _SCALAR):
        raise EmbedscopeError(
            f"filter: expected a string or a number, got {ast.unparse(node)!r}"
            + ("" if allow_list else " (a list only after `in`)")
        )
    return value


def evaluate_filter(expr: str, frame: pd.DataFrame) -> np.ndarray:
    """Boolean mask over the frame's rows. Unknown fields are an error naming the valid ones."""
    tree = parse_filter(expr)
    unknown = fields_in(tree) - set(frame.columns)
    if unknown:
        raise EmbedscopeError(
            f"filter uses unknown field(s) {', '.join(sorted(unknown))}; "
            f"metadata fields: {', '.join(map(str, frame.columns)) or 'none'}"
        )
    with np.errstate(invalid="ignore"):
        mask = _eval(tree.body, frame)
    if not isinstance(mask, pd.Series):
        raise EmbedscopeError(f"filter {expr!r} does not compare any field")
    return mask.fillna(False).to_numpy(dtype=bool)


def _column(node: ast.AST, frame: pd.DataFrame) -> pd.Series:
    if isinstance(node, ast.Name):
        return frame[node.id]
    raise EmbedscopeError(f"filter: expected a field name, got {ast.unparse(node)!r}")


def _compare(col: pd.Series, op: type, value: Any) -> pd.Series:
    if op in (ast.In, ast.NotIn):
        if not isinstance(value, list | tuple | set):
            raise EmbedscopeError("filter: `in` needs a list, e.g. genre in ['Fiction', 'Poetry']")
        try:
            out = col.isin(list(value))
        except (TypeError, ValueError, OverflowError) as exc:
            raise EmbedscopeError(f"filter: cannot compare field '{col.name}' with {value!r}") from exc
        return ~out if op is ast.NotIn else out
    if op not in _CMP:
        raise EmbedscopeError(f"filter: operator {op.__name__} is not supported")
    if isinstance(value, int | float) and not isinstance(value, bool):
        col = pd.to_numeric(col, errors="coerce")
    try:
        return _CMP[op](col, value)
    except (TypeError, ValueError, OverflowError, ArithmeticError) as exc:
        # pyarrow-backed columns raise ArrowTypeError etc., subclasses of these builtins
        raise EmbedscopeError(f"filter: cannot compare field '{col.name}' with {value!r}") from exc


def _eval(node: ast.AST, frame: pd.DataFrame) -> Any:
    if isinstance(node, ast.BoolOp):
        parts = [_eval(v, frame) for v in node.values]
        out = parts[0]
        for p in parts[1:]:
            out = (out & p) if isinstance(node.op, ast.And) else (out | p)
        return out
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ~_eval(node.operand, frame).fillna(False).astype(bool)
    if isinstance(node, ast.Compare):
        left, result = node.left, None
        for op, right in zip(node.ops, node.comparators, strict=True):
            in_list = isinstance(op, ast.In | ast.NotIn)
            if isinstance(left, ast.Name):
                part = _compare(_column(left, frame), type(op), _literal(right, allow_list=in_list))
            elif isinstance(right, ast.Name):  # 2000 <= year
                flipped = {ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE}
                part = _compare(_column(right, frame), flipped.get(type(op), type(op)), _literal(left))
            else:
                raise EmbedscopeError(f"filter: {ast.unparse(node)!r} compares no field")
            result = part if result is None else (result & part)
            left = right
        return result
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
        # `field @ 'contains' @ 'value'`, produced by _rewrite
        inner = node.left
        if isinstance(inner, ast.BinOp) and isinstance(inner.op, ast.MatMult):
            col = _column(inner.left, frame).astype("string")
            word, value = _literal(inner.right), str(_literal(node.right))
            if word not in _WORD_OPS:  # a user's own `a @ 'x' @ 'y'`, not one of ours
                raise EmbedscopeError(f"filter: unsupported expression {ast.unparse(node)!r}")
            if word == "contains":
                return col.str.contains(value, case=False, regex=False)
            return col.str.lower().str.startswith(value.lower())
    raise EmbedscopeError(f"filter: unsupported expression {ast.unparse(node)!r}")
