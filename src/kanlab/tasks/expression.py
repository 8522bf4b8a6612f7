"""Target functions written as formulas, e.g. "x1*sin(x2) + exp(-x1^2)", evaluated with numpy.

A study file can name a function the registry does not have (TaskConfig.expression); the text is
part of the task's config, so of its runs' identity, and a sweep's workers rebuild the function
from it. It is parsed with Python's ast and evaluated by walking the tree over a fixed set of
operators, functions and constants: nothing in it is executed, and anything else is refused with
an error that names it.

Legend: n points.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable

import numpy as np
from scipy import special

FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "arcsin": np.arcsin, "arccos": np.arccos,
    "arctan": np.arctan, "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh, "exp": np.exp,
    "log": np.log, "sqrt": np.sqrt, "abs": np.abs, "sign": np.sign, "floor": np.floor,
    "j0": special.j0,
}
CONSTANTS = {"pi": math.pi, "e": math.e}
_BINARY: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide, ast.Pow: np.power,
}
_UNARY: dict[type, Callable[[np.ndarray], np.ndarray]] = {ast.USub: np.negative, ast.UAdd: np.positive}


def parse(expression: str) -> ast.Expression:
    """The checked syntax tree of expression ("^" is a power, as in x^2), or a ValueError naming
    the first thing that is not a number, a variable, + - * / ^ ** or an allowed function."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError(f"a function expression must be a non-empty string, got {expression!r}")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError as err:
        raise ValueError(f"cannot parse the expression {expression!r}: {err.msg}") from None
    allowed = f"numbers, variables, + - * / ^, and {', '.join(FUNCTIONS)} of one argument, pi, e"
    for node in ast.walk(tree):
        ok = isinstance(node, (ast.Expression, ast.Name, ast.Load)) or type(node) in (*_BINARY, *_UNARY)
        if isinstance(node, ast.Constant):
            ok = isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
        elif isinstance(node, (ast.BinOp, ast.UnaryOp)):
            ok = type(node.op) in (_BINARY if isinstance(node, ast.BinOp) else _UNARY)
        elif isinstance(node, ast.Call):
            ok = (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS and len(node.args) == 1
                  and not node.keywords)
        if not ok:
            raise ValueError(f"the expression {expression!r} has {ast.unparse(node)!r}, which is not "
                             f"allowed; allowed: {allowed}")
    return tree


def variables(tree: ast.Expression) -> list[str]:
    """The names a parsed expression reads that are not functions or constants, in order of
    first appearance."""
    names = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name)]
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return list(dict.fromkeys(n for n in names if n not in called and n not in CONSTANTS))


def default_variables(tree: ast.Expression) -> tuple[str, ...]:
    """x1..xd, d the largest index of an xN the expression reads; a ValueError if it reads any
    other name (then the variables must be given)."""
    names = variables(tree)
    numbered = [int(m.group(1)) for n in names if (m := re.fullmatch(r"x([1-9][0-9]*)", n))]
    if len(numbered) != len(names) or not names:
        raise ValueError(f"the expression reads {', '.join(names) or 'no variable'}: name the variables "
                         "x1, x2, ... or list them (TaskConfig.inputs, in order)")
    return tuple(f"x{i}" for i in range(1, max(numbered) + 1))


def compile_expression(expression: str, names: tuple[str, ...]) -> Callable[..., np.ndarray]:
    """fn(*columns) -> values of expression, the columns bound to names in order.

    Raises a ValueError naming a variable of the expression that is not in names.
    """
    tree = parse(expression)
    unknown = [n for n in variables(tree) if n not in names]
    if unknown:
        raise ValueError(f"the expression {expression!r} reads {', '.join(unknown)}, which is not one of its "
                         f"variables ({', '.join(names)})")

    def evaluate(node: ast.AST, env: dict[str, np.ndarray]) -> np.ndarray:
        if isinstance(node, ast.Expression):
            return evaluate(node.body, env)
        if isinstance(node, ast.Constant):
            assert isinstance(node.value, (int, float))  # parse() let no other constant through
            return np.asarray(float(node.value))
        if isinstance(node, ast.Name):
            return env[node.id] if node.id in env else np.asarray(CONSTANTS[node.id])
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](evaluate(node.left, env), evaluate(node.right, env))
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](evaluate(node.operand, env))
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        return FUNCTIONS[node.func.id](evaluate(node.args[0], env))

    def fn(*columns: np.ndarray) -> np.ndarray:
        return evaluate(tree, dict(zip(names, columns, strict=True)))

    return fn
