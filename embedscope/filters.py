"""Safe metadata filters: `year >= 2000 and categories contains 'Fiction'`.

The expression is parsed with Python's own `ast` (so precedence, quoting and parentheses work as
people expect) and only a whitelist of nodes is evaluated: comparisons of a field with literals,
`and`/`or`/`not`, `in [...]`, and `contains`/`startswith` written as `field contains 'x'`. Nothing
is ever `eval`-ed. Evaluation is vectorised over a pandas frame of metadata.
"""

from __future__ import annotations

import ast
import operator
import re
from typing import Any

import numpy as np
import pandas as pd

from embedscope.errors import EmbedscopeError

_CMP = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_WORD_OPS = re.compile(r"\b(contains|startswith)\b\s*")


def _rewrite(expr: str) -> str:
    # `f contains 'x'` -> `f.contains('x')` would allow attribute calls; use a marker operator
    # instead: `f @contains 'x'` is parsed as a matmul BinOp that we recognise below.
    return _WORD_OPS.sub(lambda m: f"@ '{m.group(1)}' @ ", expr)


def parse_filter(expr: str) -> ast.Expression:
    expr = expr.strip()
    if not expr:
        raise EmbedscopeError("empty filter")
    if expr.count("=") and not re.search(r"[<>!=]=|==", expr):
        expr = re.sub(r"(?<![<>!=])=(?!=)", "==", expr)  # accept `genre = 'x'`
    try:
        tree = ast.parse(_rewrite(expr), mode="eval")
    except SyntaxError:
        raise EmbedscopeError(
            f"malformed filter {expr!r}; write e.g. \"year >= 2000 and categories contains 'Fiction'\""
        ) from None
    return tree


def fields_in(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise EmbedscopeError(f"filter: expected a literal value, got {ast.unparse(node)!r}") from None


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
        out = col.isin(list(value))
        return ~out if op is ast.NotIn else out
    if op not in _CMP:
        raise EmbedscopeError(f"filter: operator {op.__name__} is not supported")
    if isinstance(value, int | float) and not isinstance(value, bool):
        col = pd.to_numeric(col, errors="coerce")
    try:
        return _CMP[op](col, value)
    except TypeError:
        raise EmbedscopeError(f"filter: cannot compare field '{col.name}' with {value!r}") from None


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
            if isinstance(left, ast.Name):
                part = _compare(_column(left, frame), type(op), _literal(right))
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
            if word == "contains":
                return col.str.contains(value, case=False, regex=False)
            return col.str.lower().str.startswith(value.lower())
    raise EmbedscopeError(f"filter: unsupported expression {ast.unparse(node)!r}")
