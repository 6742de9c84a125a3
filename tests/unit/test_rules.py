"""Decision rules: grammar, evaluation, and that no input escapes as anything but RuleError."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aef.errors import ValidationFailed
from aef.rules import (
    MAX_DEPTH,
    MAX_RULE_LENGTH,
    All,
    AnyOf,
    Comparison,
    Exists,
    MissingVariable,
    Not,
    Rule,
    RuleError,
    evaluate,
    parse,
)

VARS: dict[str, Any] = {
    "email_category": "Investor",
    "crm_match_count": "1",
    "count": 3,
    "ratio": 0.5,
    "flag": True,
    "flag_text": "TRUE",
    "nothing": None,
    "email": {"category": "Newsletter", "tags": ["vc", "seed"], "from": {"domain": "vc.example"}},
    "emails": [{"id": "t1"}, {"id": "t2"}],
    "date": "2025-01-15",
}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ('email_category == "Investor"', True),
        ('email_category == "investor"', False),  # case-sensitive
        ('email_category != "Investor"', False),
        ('email.category == "Newsletter"', True),
        ('email.from.domain == "vc.example"', True),
        ('emails.1.id == "t2"', True),
        ("crm_match_count > 0", True),  # page text "1" compares as a number
        ("crm_match_count == 1", True),
        ("crm_match_count >= 2", False),
        ("count < 3.5", True),
        ("count <= 3", True),
        ("ratio == 0.5", True),
        ("flag == true", True),
        ("flag_text == true", True),
        ("flag == 1", False),  # booleans are not numbers
        ("nothing == null", True),
        ("count == null", False),
        ('email_category contains "vest"', True),
        ('email.tags contains "seed"', True),
        ('email.tags contains "series-a"', False),
        ('email contains "category"', True),
        ('email_category matches "^Inv"', True),
        ('email_category MATCHES "(?i)^inv"', True),
        ('date >= "2025-01-01"', True),  # strings order lexicographically (ISO dates)
        ("email_category exists", True),
        ("nothing exists", False),  # null counts as absent
        ("unknown exists", False),
        ("unknown not exists", True),
        ("email.category.deeper not exists", True),
        ('email_category == "Investor" and count > 2', True),
        ('email_category == "Investor" AND count > 5', False),
        ('count > 5 or email_category == "Investor"', True),
        # and binds tighter than or
        ('count > 5 and flag == true or email_category == "Investor"', True),
        ('count > 5 and (flag == true or email_category == "Investor")', False),
        # not, and bare paths as boolean tests
        ("flag", True),
        ("flag_text", True),
        ("email_category", False),  # only true (or "true") is true
        ("not flag", False),
        ("NOT count > 5", True),
        ('not (count > 5 or email_category == "Investor")', False),
        ("not not flag", True),
        ("not unknown exists", True),
        ("flag and not count > 5", True),
        # short-circuit: the missing variable on the right is never read
        ("count > 1 or missing == 1", True),
        ("count > 5 and missing == 1", False),
    ],
)
def test_evaluate(rule: str, expected: bool) -> None:
    assert evaluate(rule, VARS) is expected
    assert parse(rule).evaluate(VARS) is expected


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("email_category = 'Investor'", "'=='"),
        ("email_category == 'Investor'", "double quotes"),
        ('email_category == "Investor', "unterminated"),
        ("email_category ==", "JSON literal"),
        ("email_category Investor", "expected an operator"),
        ("== 3", "expected a variable name"),
        ("and == 3", "expected a variable name"),
        ("count > 1 and", "expected a variable name"),
        ("(count > 1", "expected ')'"),
        ("count > 1)", "expected 'and', 'or' or the end"),
        ("count not 3", "expected 'exists' after 'not'"),
        ("not", "expected a variable name"),
        ("not and", "expected a variable name"),
        ('a "x"', "expected an operator"),
        ("count > true", "needs a number or a string"),
        ("count > null", "needs a number or a string"),
        ("name matches 3", "needs a string pattern"),
        ('name matches "[a-"', "invalid pattern"),
        ('name == "\\x"', "invalid literal"),
        ("count > 1e999", "out of range"),
        ("count > 01", "unexpected"),
        ("count > 3abc", "unexpected"),
        ("count > 1 && x > 2", "unexpected character '&'"),
    ],
)
def test_bad_rules_are_refused_with_a_clear_message(rule: str, fragment: str) -> None:
    with pytest.raises(RuleError) as info:
        parse(rule)
    assert fragment in info.value.detail
    assert info.value.code == "invalid_rule"
    assert info.value.status == 422
    assert isinstance(info.value, ValidationFailed)


def test_non_string_rule_is_refused() -> None:
    with pytest.raises(RuleError, match="must be a string"):
        parse(42)  # type: ignore[arg-type]


def test_limits() -> None:
    with pytest.raises(RuleError, match="longer than"):
        parse("a == 1 or " * (MAX_RULE_LENGTH // 10) + "a == 1")
    nested = "(" * MAX_DEPTH + "a == 1" + ")" * MAX_DEPTH
    assert parse(nested).evaluate({"a": 1})
    with pytest.raises(RuleError, match="nested deeper"):
        parse("(" + nested + ")")
    with pytest.raises(RuleError, match="nested deeper"):
        parse("not " * (MAX_DEPTH + 1) + "a")


def test_error_position_points_at_the_fault() -> None:
    with pytest.raises(RuleError) as info:
        parse('a == 1 and b ~ "x"')
    assert info.value.extra["position"] == 13


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ('missing == "x"', "missing"),
        ("missing", "missing"),
        ("not missing.flag", "missing.flag"),
        ('email.subject == "x"', "email.subject"),
        ("emails.5.id == 1", "emails.5.id"),
        ("email_category.length > 1", "email_category.length"),
    ],
)
def test_missing_variable(rule: str, path: str) -> None:
    with pytest.raises(MissingVariable) as info:
        evaluate(rule, VARS)
    assert info.value.path == path
    assert info.value.code == "missing_variable"
    assert isinstance(info.value, RuleError)
    assert path in info.value.detail


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ("email_category > 3", "with a number"),
        ("email.tags > 3", "with a number"),
        ("flag > 0", "with a number"),
        ('count > "a"', "with a string"),
        ('count matches "3"', "'matches' needs text"),
        ("email_category contains 3", "needs a string literal"),
        ('count contains "3"', "cannot apply 'contains'"),
    ],
)
def test_type_mismatch_is_a_rule_error(rule: str, fragment: str) -> None:
    parse(rule)  # well-formed: the mismatch only shows with these variables
    with pytest.raises(RuleError) as info:
        evaluate(rule, VARS)
    assert not isinstance(info.value, MissingVariable)
    assert fragment in info.value.detail


def test_paths_and_canonical_form() -> None:
    rule = parse('(a.b == "x" OR c exists) and d.0.e not exists and f > 2 and not (g or h)')
    assert rule.paths == {"a.b", "c", "d.0.e", "f", "g", "h"}
    assert rule.variables == {"a", "c", "d", "f", "g", "h"}
    assert str(rule) == (
        '(a.b == "x" or c exists) and d.0.e not exists and f > 2 and not (g == true or h == true)'
    )
    assert parse(str(rule)).root == rule.root
    assert isinstance(rule.root, All)
    assert isinstance(rule.root.terms[0], AnyOf)


def test_evaluate_accepts_a_parsed_rule() -> None:
    rule = parse("count == 3")
    assert isinstance(rule, Rule)
    assert evaluate(rule, VARS) is True
    assert evaluate(rule, {"count": "3"}) is True
    assert evaluate(rule, {"count": " 3 "}) is True
    assert evaluate(rule, {"count": "three"}) is False


def test_no_eval_of_python() -> None:
    with pytest.raises(RuleError):
        parse("__import__('os').system('true')")
    with pytest.raises(RuleError):
        parse("a == 1 or __class__ == 1 and a.__class__ == ().__class__")


# --- properties -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
variables = st.dictionaries(st.sampled_from(["a", "b", "c", "email", "n"]), json_values, max_size=5)

rule_fragments = st.lists(
    st.sampled_from(
        """a b.c email.category n.0 == != > < >= <= contains matches exists not and or ( )
        "x" "Investor" "[a-" "(a+)+" 1 -2.5 1e3 true false null 'x' = && " """.split()
    ),
    max_size=14,
).map(" ".join)


@settings(max_examples=250, deadline=None)
@given(st.text(max_size=200) | rule_fragments)
def test_parse_never_raises_anything_but_rule_error(text: str) -> None:
    try:
        rule = parse(text)
    except RuleError:
        return
    assert parse(str(rule)).root == rule.root


@settings(max_examples=250, deadline=None)
@given(st.text(max_size=120) | rule_fragments, variables)
def test_evaluate_never_raises_anything_but_rule_error(text: str, values: dict[str, Any]) -> None:
    try:
        result = evaluate(text, values)
    except RuleError:
        return
    assert isinstance(result, bool)


# Generated well-formed rules evaluate like a reference implementation written with Python
# operators directly.
names = st.sampled_from(["a", "b", "c"])
literals = st.one_of(
    st.integers(-5, 5), st.sampled_from(["x", "y", "10", ""]), st.booleans(), st.none()
)


@st.composite
def comparisons(draw: st.DrawFn) -> tuple[str, Any]:
    name = draw(names)
    op = draw(st.sampled_from(["==", "!=", ">", "<", "exists", "not exists", "bare"]))
    if op in ("exists", "not exists"):
        return f"{name} {op}", ("exists", name, op == "not exists")
    if op == "bare":
        return name, ("cmp", name, "==", True)
    literal = draw(st.integers(-5, 5)) if op in (">", "<") else draw(literals)
    return f"{name} {op} {json.dumps(literal)}", ("cmp", name, op, literal)


@st.composite
def expressions(draw: st.DrawFn, depth: int = 0) -> tuple[str, Any]:
    if depth >= 2 or draw(st.booleans()):
        return draw(comparisons())
    if draw(st.integers(0, 3)) == 0:
        inner = draw(expressions(depth + 1))
        return f"not ({inner[0]})", ("not", inner[1])
    joiner = draw(st.sampled_from(["and", "or"]))
    parts = draw(st.lists(expressions(depth + 1), min_size=2, max_size=3))
    text = f" {joiner} ".join(f"({p[0]})" for p in parts)
    return text, (joiner, [p[1] for p in parts])


def reference(tree: Any, values: dict[str, Any]) -> bool:
    kind = tree[0]
    if kind == "and":
        return all(reference(t, values) for t in tree[1])
    if kind == "or":
        return any(reference(t, values) for t in tree[1])
    if kind == "not":
        return not reference(tree[1], values)
    if kind == "exists":
        present = values.get(tree[1]) is not None
        return present != tree[2]
    _, name, op, literal = tree
    value = values[name]
    if op in ("==", "!="):
        same = type(value) is type(literal) and value == literal
        return same if op == "==" else not same
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("only numbers are ordered against a number")
    return value > literal if op == ">" else value < literal


def check_against_reference(text: str, tree: Any, values: dict[str, Any]) -> None:
    try:
        expected = reference(tree, values)
    except TypeError:  # e.g. ordering a string or a bool against a number
        with pytest.raises(RuleError):
            evaluate(text, values)
        return
    assert evaluate(text, values) is expected


@settings(max_examples=200, deadline=None)
@given(
    expressions(),
    st.fixed_dictionaries({n: st.integers(-6, 6) | st.booleans() for n in "abc"}),
)
def test_generated_rules_match_reference(expr: tuple[str, Any], values: dict[str, Any]) -> None:
    check_against_reference(*expr, values)


@settings(max_examples=200, deadline=None)
@given(expressions(), st.fixed_dictionaries({n: st.sampled_from(["x", "y", None]) for n in "abc"}))
def test_generated_rules_over_strings(expr: tuple[str, Any], values: dict[str, Any]) -> None:
    check_against_reference(*expr, values)


def test_node_types_are_exported() -> None:
    rule = parse('a == "x" or b exists')
    assert rule.root == AnyOf((Comparison(("a",), "==", "x"), Exists(("b",))))
    assert parse("not a").root == Not(Comparison(("a",), "==", True))
