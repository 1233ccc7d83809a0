"""Safe metadata filters: `year >= 2000 and categories contains 'Fiction'`.

The expression is parsed with Python's own `ast` (so precedence, quoting and parentheses work as
people expect) and only a whitelist of nodes is evaluated: comparisons of a field with literals,
`and`/`or`/`not`, `in [...]`, and three word operators written as `field contains 'x'`:
`contains` is a case-insensitive SUBSTRING test (`categories contains 'fiction'` also matches
"Juvenile Nonfiction"), `has` a case-insensitive ELEMENT test (the value is one element of a list
field, or the whole text or one comma/semicolon-separated part of a text field: `categories has
'Fiction'` matches "Fiction" and "History, Fiction", not "Juvenile Fiction" or "Nonfiction"), and
`startswith` a case-insensitive prefix test.
Nothing is ever `eval`-ed. One walker reads the tree; two emitters give it meaning: a vectorised pandas
evaluation over a frame of metadata (the embedded store), and parameterised SQL over a JSONB
column (the PostgreSQL store), where field names and values are always bound parameters, never
text in the statement. Both follow the same rules: a missing value fails every comparison except
`!=` and `not in`; a number literal compares the field as a number (numeric strings included).

Every failure is an `EmbedscopeError` in one line (a 400 over HTTP, `error:` in the CLI): a filter is
at most MAX_CHARS characters and MAX_DEPTH levels deep, because the evaluator and `ast` recurse and an
attacker controls the expression; literals must be scalars (a list literal only after `in`).
"""

from __future__ import annotations

import ast
import io
import json
import operator
import re
import tokenize
from collections.abc import Callable, Collection
from typing import Protocol, TypeVar

import numpy as np
import pandas as pd

from embedscope.errors import EmbedscopeError
from embedscope.jsontypes import JSONValue

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
_WORD_OPS = ("contains", "has", "startswith")
#: what separates the parts of a text field for `has` (a CSV cell holding several categories)
_PARTS = r"\s*[,;]\s*"
_SCALAR = (str, int, float, bool, type(None))
_EXAMPLE = "write e.g. \"year >= 2000 and categories contains 'Fiction'\""


def _rewrite(expr: str) -> str:
    """Rewrite the word operators and `=` on the token stream, so string literals are never touched.

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


def _literal(node: ast.AST, *, allow_list: bool = False) -> JSONValue:
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


def _check_fields(tree: ast.AST, fields: Collection[str]) -> None:
    unknown = fields_in(tree) - set(fields)
    if unknown:
        raise EmbedscopeError(
            f"filter uses unknown field(s) {', '.join(sorted(unknown))}; "
            f"metadata fields: {', '.join(map(str, fields)) or 'none'}"
        )


def evaluate_filter(expr: str, frame: pd.DataFrame) -> np.ndarray:
    """Boolean mask over the frame's rows. Unknown fields are an error naming the valid ones."""
    tree = parse_filter(expr)
    _check_fields(tree, frame.columns)
    with np.errstate(invalid="ignore"):
        mask = _walk(tree.body, _PandasEmitter(frame))
    if not isinstance(mask, pd.Series):
        raise EmbedscopeError(f"filter {expr!r} does not compare any field")
    return mask.fillna(False).to_numpy(dtype=bool)


def filter_sql(expr: str, column: str, fields: Collection[str] | None = None) -> tuple[str, list[JSONValue]]:
    """The filter as a SQL boolean expression over the JSONB `column` (a trusted name from our own
    code, e.g. "i.metadata"), with `%s` placeholders and their parameters: field names and values
    are only ever parameters. Never NULL: missing values are decided as `evaluate_filter` decides."""
    tree = parse_filter(expr)
    if fields is not None:
        _check_fields(tree, fields)
    emitter = _SqlEmitter(column)
    return _walk(tree.body, emitter), emitter.params


_FLIPPED = {ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE}


def _field(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    raise EmbedscopeError(f"filter: expected a field name, got {ast.unparse(node)!r}")


def _check_value(field: str, op: type[ast.cmpop], value: object) -> None:
    if op in (ast.In, ast.NotIn):
        if not isinstance(value, list | tuple | set):
            raise EmbedscopeError("filter: `in` needs a list, e.g. genre in ['Fiction', 'Poetry']")
        return
    if op not in _CMP:
        raise EmbedscopeError(f"filter: operator {op.__name__} is not supported")
    scalar = str | int | float if op not in (ast.Eq, ast.NotEq) else str | int | float | bool | None
    if not isinstance(value, scalar) or (op not in (ast.Eq, ast.NotEq) and isinstance(value, bool)):
        raise EmbedscopeError(f"filter: cannot compare field '{field}' with {value!r}")


T = TypeVar("T")


class _Emitter(Protocol[T]):
    """What the walker needs of an emitter (T: a boolean Series, or SQL text); the word operators
    (contains, startswith, has) are looked up by name."""

    def and_(self, parts: list[T]) -> T: ...
    def or_(self, parts: list[T]) -> T: ...
    def not_(self, part: T) -> T: ...
    def compare(self, field: str, op: type[ast.cmpop], value: JSONValue) -> T: ...


def _walk(node: ast.AST, emit: _Emitter[T]) -> T:
    """Check the tree against the whitelist and build the emitter's expression for it."""
    if isinstance(node, ast.BoolOp):
        parts = [_walk(v, emit) for v in node.values]
        return emit.and_(parts) if isinstance(node.op, ast.And) else emit.or_(parts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return emit.not_(_walk(node.operand, emit))
    if isinstance(node, ast.Compare):
        left, parts = node.left, []
        for op, right in zip(node.ops, node.comparators, strict=True):
            in_list = isinstance(op, ast.In | ast.NotIn)
            if isinstance(left, ast.Name):
                field, kind, value = left.id, type(op), _literal(right, allow_list=in_list)
            elif isinstance(right, ast.Name):  # 2000 <= year
                field, kind, value = right.id, _FLIPPED.get(type(op), type(op)), _literal(left)
            else:
                raise EmbedscopeError(f"filter: {ast.unparse(node)!r} compares no field")
            _check_value(field, kind, value)
            parts.append(emit.compare(field, kind, value))
            left = right
        return parts[0] if len(parts) == 1 else emit.and_(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
        # `field @ 'contains' @ 'value'`, produced by _rewrite
        inner = node.left
        if isinstance(inner, ast.BinOp) and isinstance(inner.op, ast.MatMult):
            field, word, value = _field(inner.left), _literal(inner.right), str(_literal(node.right))
            if word not in _WORD_OPS:  # a user's own `a @ 'x' @ 'y'`, not one of ours
                raise EmbedscopeError(f"filter: unsupported expression {ast.unparse(node)!r}")
            word_op: Callable[[str, str], T] = getattr(emit, str(word))
            return word_op(field, value)
    raise EmbedscopeError(f"filter: unsupported expression {ast.unparse(node)!r}")


class _PandasEmitter:
    """Vectorised evaluation over a metadata frame: each node becomes a boolean Series."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def and_(self, parts: list[pd.Series]) -> pd.Series:
        out = parts[0]
        for p in parts[1:]:
            out = out & p
        return out

    def or_(self, parts: list[pd.Series]) -> pd.Series:
        out = parts[0]
        for p in parts[1:]:
            out = out | p
        return out

    def not_(self, part: pd.Series) -> pd.Series:
        return ~part.fillna(False).astype(bool)

    def compare(self, field: str, op: type[ast.cmpop], value: JSONValue) -> pd.Series:
        col = self.frame[field]
        try:
            if op in (ast.In, ast.NotIn):
                out = col.isin(list(value))
                return ~out if op is ast.NotIn else out
            if isinstance(value, int | float) and not isinstance(value, bool):
                col = pd.to_numeric(col, errors="coerce")
            return _CMP[op](col, value)
        except (TypeError, ValueError, OverflowError, ArithmeticError) as exc:
            # pyarrow-backed columns raise ArrowTypeError etc., subclasses of these builtins
            raise EmbedscopeError(f"filter: cannot compare field '{field}' with {value!r}") from exc

    def contains(self, field: str, value: str) -> pd.Series:
        return self.frame[field].astype("string").str.contains(value, case=False, regex=False)

    def startswith(self, field: str, value: str) -> pd.Series:
        return self.frame[field].astype("string").str.lower().str.startswith(value.lower())

    def has(self, field: str, value: str) -> pd.Series:
        wanted = value.strip().casefold()

        def test(v: object) -> bool:
            if isinstance(v, list | tuple | np.ndarray):
                parts = [str(x) for x in v]
            elif isinstance(v, str):
                parts = re.split(_PARTS, v)
            elif v is None or (isinstance(v, float) and np.isnan(v)):
                return False
            else:
                parts = [json.dumps(v) if isinstance(v, bool) else str(v)]
            return any(p.strip().casefold() == wanted for p in parts)

        # row by row (a Python test per value): lists and split texts have no vectorised form in pandas
        return self.frame[field].map(test).astype(bool)


# what pandas.to_numeric accepts in a string (plus inf); anything else is not a number
_NUMERIC_TEXT = r"^\s*[-+]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|inf|infinity)\s*$"
_SQL_OPS = {ast.Eq: "=", ast.NotEq: "=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}


class _SqlEmitter:
    """SQL over a JSONB column; every placeholder's value is appended to `params` in order."""

    def __init__(self, column: str) -> None:
        self.column = column
        self.params: list[JSONValue] = []

    def _value(self, field: str) -> str:
        self.params.append(field)
        return f"({self.column} -> %s)"

    def _text(self, field: str) -> str:
        self.params.append(field)
        return f"({self.column} ->> %s)"

    def _number(self, field: str) -> str:
        # booleans count as 1/0 and numeric strings as numbers, as pandas.to_numeric decides
        kind = f"jsonb_typeof({self._value(field)})"
        as_bool = f"{self._text(field)}::boolean::int::float8"
        text = self._text(field)
        self.params.append(_NUMERIC_TEXT)
        as_number = f"{self._text(field)}::float8"
        return f"(CASE WHEN {kind} = 'boolean' THEN {as_bool} WHEN {text} ~* %s THEN {as_number} END)"

    def and_(self, parts: list[str]) -> str:
        return "(" + " AND ".join(parts) + ")"

    def or_(self, parts: list[str]) -> str:
        return "(" + " OR ".join(parts) + ")"

    def not_(self, part: str) -> str:
        return f"(NOT {part})"

    def compare(self, field: str, op: type[ast.cmpop], value: JSONValue) -> str:
        if op in (ast.In, ast.NotIn):
            found = f"{self._value(field)} IN (SELECT jsonb_array_elements(%s::jsonb))"
            self.params.append(json.dumps(list(value), default=str))
            return f"({'NOT ' if op is ast.NotIn else ''}coalesce({found}, false))"
        negate = "NOT " if op is ast.NotEq else ""
        if value is None:  # pandas: nothing equals None
            return "TRUE" if op is ast.NotEq else "FALSE"
        if isinstance(value, bool):
            test = f"{self._value(field)} = %s::jsonb"
            self.params.append(json.dumps(value))
        elif isinstance(value, int | float):
            test = f"{self._number(field)} {_SQL_OPS[op]} %s::float8"
            self.params.append(float(value))
        elif op in (ast.Eq, ast.NotEq):
            test = f"{self._value(field)} = to_jsonb(%s::text)"
            self.params.append(value)
        else:  # ordering of strings: code point order, as Python compares them
            kind = f"jsonb_typeof({self._value(field)})"
            test = f"CASE WHEN {kind} = 'string' THEN {self._text(field)} COLLATE \"C\" {_SQL_OPS[op]} %s END"
            self.params.append(value)
        return f"({negate}coalesce({test}, false))"

    def contains(self, field: str, value: str) -> str:
        test = f"strpos(lower({self._text(field)}), lower(%s)) > 0"
        self.params.append(value)
        return f"coalesce({test}, false)"

    def has(self, field: str, value: str) -> str:
        # placeholders in statement order: each fragment appends its parameters as it is built
        kind = f"jsonb_typeof({self._value(field)})"
        array = self._value(field)
        self.params.append(value)
        same = "lower(trim({})) = lower(trim(%s))"
        element = f"EXISTS (SELECT 1 FROM jsonb_array_elements_text({array}) e WHERE {same.format('e')})"
        text = self._text(field)
        self.params += [_PARTS, value]
        part = f"EXISTS (SELECT 1 FROM regexp_split_to_table({text}, %s) p WHERE {same.format('p')})"
        scalar = f"lower({self._text(field)}) = lower(trim(%s))"
        self.params.append(value)
        test = f"CASE {kind} WHEN 'array' THEN {element} WHEN 'string' THEN {part} ELSE {scalar} END"
        return f"coalesce({test}, false)"

    def startswith(self, field: str, value: str) -> str:
        test = f"starts_with(lower({self._text(field)}), lower(%s))"
        self.params.append(value)
        return f"coalesce({test}, false)"
