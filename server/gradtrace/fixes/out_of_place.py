"""libcst transformer: in-place tensor updates rewritten out of place (imported only to build a fix)."""

import libcst as cst

OPERATORS = {"add_": cst.Add, "sub_": cst.Subtract, "mul_": cst.Multiply, "div_": cst.Divide}
AUG_TO_BIN = {cst.AddAssign: cst.Add, cst.SubtractAssign: cst.Subtract, cst.MultiplyAssign: cst.Multiply,
              cst.DivideAssign: cst.Divide, cst.PowerAssign: cst.Power, cst.MatrixMultiplyAssign: cst.MatrixMultiply}


class OutOfPlace(cst.CSTTransformer):
    """`x.add_(y)` → `x = x + y`, `x.clamp_(0, 1)` → `x = x.clamp(0, 1)`, `x += y` → `x = x + y`."""

    def leave_Expr(self, original, updated):
        return updated

    def leave_SimpleStatementLine(self, original, updated):
        body = []
        for small in updated.body:
            body.append(self._rewrite(small))
        return updated.with_changes(body=body)

    def _rewrite(self, small):
        if isinstance(small, cst.AugAssign) and type(small.operator) in AUG_TO_BIN:
            op = AUG_TO_BIN[type(small.operator)]()
            value = cst.BinaryOperation(left=small.target, operator=op, right=_paren_if_needed(small.value))
            return cst.Assign(targets=[cst.AssignTarget(target=small.target)], value=value)
        if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
            call = small.value
            func = call.func
            if isinstance(func, cst.Attribute) and func.attr.value.endswith("_") and isinstance(
                func.value, (cst.Name, cst.Attribute)
            ):
                target = func.value
                method = func.attr.value
                args = [a for a in call.args if not (a.keyword and a.keyword.value == "alpha")]
                if method in OPERATORS and len(args) == 1 and len(call.args) == 1:
                    value = cst.BinaryOperation(left=target, operator=OPERATORS[method](),
                                                right=_paren_if_needed(args[0].value))
                else:
                    value = call.with_changes(func=func.with_changes(attr=cst.Name(method[:-1])))
                return cst.Assign(targets=[cst.AssignTarget(target=target)], value=value)
        return small


def _paren_if_needed(expr):
    if isinstance(expr, (cst.BinaryOperation, cst.BooleanOperation, cst.IfExp, cst.Lambda, cst.Comparison)):
        return expr.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    return expr
