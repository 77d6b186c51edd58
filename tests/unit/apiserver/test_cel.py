"""CEL as kube-apiserver evaluates it: semantics, the Kubernetes libraries, errors, costs."""

from __future__ import annotations

import time
from typing import Any

import pytest

from arges.apiserver.cel import compile_expr
from arges.apiserver.celext import FUNCTIONS
from arges.apiserver.celnodes import CompileError
from arges.apiserver.celtypes import DYN, Type, list_type, string_type
from arges.apiserver.celvalues import CostLimitExceeded, EvalError, Meter


def run(source: str, limit: int = 1_000_000, **variables: Any) -> Any:
    program = compile_expr(source, dict.fromkeys(variables, DYN), FUNCTIONS)
    return program.evaluate(variables, Meter(limit))


@pytest.mark.parametrize(
    ("source", "variables", "expected"),
    [
        # The core language.
        ("!(self in ['Ready', 'Available'])", {"self": "Ready"}, False),
        ("!(self in ['Ready', 'Available'])", {"self": "Other"}, True),
        ("self.a - 1", {"self": {"a": 3}}, 2),
        ("-7 / 2 == -3 && -7 % 2 == -1", {}, True),
        ("7.0 / 2.0", {}, 3.5),
        ("'a' + 'b' == 'ab' && [1] + [2] == [1, 2]", {}, True),
        ("self.x ? 'y' : 'n'", {"self": {"x": True}}, "y"),
        ("{'a': 1}.a == 1 && {'a': 1}['a'] == 1", {}, True),
        ("has(self.a) && !has(self.b)", {"self": {"a": None}}, True),
        ("self == {'a': [1, 2]}", {"self": {"a": [1, 2]}}, True),
        ("dyn(1) == 1.0", {}, True),
        ("type(1) == int && type('') == string && type(self) == map", {"self": {}}, True),
        # Errors are absorbed by a decisive other side of && and ||.
        ("self.missing == 1 || true", {"self": {}}, True),
        ("false && self.missing == 1", {"self": {}}, False),
        # Macros.
        ("self.all(x, x > 0)", {"self": [1, 2, 3]}, True),
        ("self.all(k, k.startsWith('a'))", {"self": {"ab": 1, "ac": 2}}, True),
        ("self.exists(x, x == 'b')", {"self": ["a", "b"]}, True),
        ("self.exists_one(x, x > 1)", {"self": [1, 2, 3]}, False),
        ("self.map(x, x * 2)", {"self": [1, 2]}, [2, 4]),
        ("self.map(x, x > 1, x * 2)", {"self": [1, 2]}, [4]),
        ("self.filter(x, x % 2 == 1)", {"self": [1, 2, 3]}, [1, 3]),
        ("self.all(x, self.exists(y, y == x))", {"self": [1, 2]}, True),
        # Standard functions.
        ("size(self) == 5 && self.size() == 5", {"self": "héllo"}, True),
        ("'abc'.contains('b') && 'abc'.startsWith('a') && 'abc'.endsWith('c')", {}, True),
        ("'abc123'.matches('^[a-z]+[0-9]+$')", {}, True),
        ("int('42') + int(2.9) == 44 && double(1) == 1.0 && string(12) == '12'", {}, True),
        ("bool('true') && !bool('false')", {}, True),
        ("timestamp('2024-03-05T06:07:08Z').getFullYear()", {}, 2024),
        ("timestamp('2024-03-05T06:07:08Z').getMonth()", {}, 2),
        ("timestamp('2024-03-05T06:07:08Z').getDayOfMonth()", {}, 4),
        ("timestamp('2024-03-05T06:07:08Z').getDayOfWeek()", {}, 2),
        ("duration('1h30m').getMinutes()", {}, 90),
        (
            "timestamp('2024-01-01T00:00:10Z') - timestamp('2024-01-01T00:00:00Z') "
            "== duration('10s')",
            {},
            True,
        ),
        # Kubernetes list library.
        ("[1, 2, 3].isSorted() && !['b', 'a'].isSorted()", {}, True),
        ("[1, 2, 3].sum()", {}, 6),
        ("[3, 1, 2].min()", {}, 1),
        ("['a', 'c', 'b'].max()", {}, "c"),
        ("[1, 2, 1].indexOf(1) == 0 && [1, 2, 1].lastIndexOf(1) == 2", {}, True),
        ("[1, 2, 3, 4].slice(1, 3)", {}, [2, 3]),
        ("[[1], [2, [3]]].flatten()", {}, [1, 2, [3]]),
        ("[1, 2, 1].distinct()", {}, [1, 2]),
        ("[3, 1, 2].sort()", {}, [1, 2, 3]),
        # Kubernetes string library.
        ("'hello'.charAt(1)", {}, "e"),
        ("'hello'.indexOf('l') == 2 && 'hello'.lastIndexOf('l') == 3", {}, True),
        ("'MiXeD'.lowerAscii() + 'MiXeD'.upperAscii()", {}, "mixedMIXED"),
        ("'a-b-c'.replace('-', '.')", {}, "a.b.c"),
        ("'a,b,c'.split(',')", {}, ["a", "b", "c"]),
        ("'a,b,c'.split(',', 2)", {}, ["a", "b,c"]),
        ("'hello'.substring(1, 3)", {}, "el"),
        ("'  x  '.trim()", {}, "x"),
        ("['a', 'b'].join('-')", {}, "a-b"),
        ("'%s has %d items (%.2f)'.format(['list', 3, 1.5])", {}, "list has 3 items (1.50)"),
        ("strings.quote('a\"b')", {}, '"a\\"b"'),
        ("'abc'.reverse()", {}, "cba"),
        # Kubernetes regex library.
        ("'abc 123 def 456'.find('[0-9]+')", {}, "123"),
        ("'abc 123 def 456'.findAll('[0-9]+')", {}, ["123", "456"]),
        # Kubernetes URL library.
        ("url('https://example.com:8443/a%20b?x=1&x=2').getHostname()", {}, "example.com"),
        ("url('https://example.com:8443/p').getPort()", {}, "8443"),
        ("url('https://[::1]:80/').getHost()", {}, "[::1]:80"),
        ("url('https://example.com/p?x=1&x=2').getQuery()", {}, {"x": ["1", "2"]}),
        ("isURL('https://example.com') && !isURL('not a url')", {}, True),
        # Kubernetes quantity library.
        ("quantity('1Gi').isGreaterThan(quantity('1G'))", {}, True),
        ("quantity('500m').asApproximateFloat()", {}, 0.5),
        ("quantity('2k').asInteger()", {}, 2000),
        ("quantity('1.5').isInteger()", {}, False),
        ("quantity('1Mi').add(quantity('1Mi')).compareTo(quantity('2Mi'))", {}, 0),
        ("isQuantity('10Gi') && !isQuantity('10 Gi')", {}, True),
        ("quantity('-1').sign()", {}, -1),
        # Optionals and sets.
        ("optional.of(1).hasValue() && optional.none().orValue(5) == 5", {}, True),
        ("optional.of(2).value()", {}, 2),
        ("sets.contains([1, 2, 3], [2]) && sets.intersects([1], [1, 4])", {}, True),
        ("sets.equivalent([1, 2], [2, 1, 1])", {}, True),
    ],
)
def test_expressions_evaluate_as_in_kube(source: str, variables: dict, expected: Any) -> None:
    assert run(source, **variables) == expected


@pytest.mark.parametrize(
    ("source", "variables", "message"),
    [
        ("self.missing == 1", {"self": {}}, "no such key: missing"),
        ("[1, 2][5]", {}, "index out of bounds: 5"),
        ("1 / 0", {}, "division by zero"),
        ("1 % 0", {}, "modulus by zero"),
        ("9223372036854775807 + 1", {}, "integer overflow"),
        ("self + 1", {"self": "a"}, "no such overload"),
        ("[].min()", {}, "min(list) called on an empty list"),
        ("quantity('1.5').asInteger()", {}, "cannot convert value to integer"),
        ("'abc'.substring(2, 1)", {}, "invalid substring range. start: 2, end: 1"),
        ("optional.none().value()", {}, "optional.none() dereference"),
    ],
)
def test_runtime_errors_are_worded_as_cel_go(source: str, variables: dict, message: str) -> None:
    with pytest.raises(EvalError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        run(source, **variables)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("self ==", "ERROR: <input>:1:6: Syntax error: mismatched input '<EOF>'"),
        ("self.nope > 0", "ERROR: <input>:1:5: undefined field 'nope'"),
        ("self.spec == true", "ERROR: <input>:1:11: found no matching overload for '_==_'"),
        ("unknown > 1", "ERROR: <input>:1:1: undeclared reference to 'unknown'"),
        ("self.spec.frobnicate()", "undeclared reference to 'frobnicate'"),
        ("self.spec.contains(1)", "found no matching overload for 'contains'"),
    ],
)
def test_compile_errors_name_the_place(source: str, message: str) -> None:
    declared = {"self": Type("object", fields={"spec": string_type(10)})}
    with pytest.raises(CompileError) as err:
        compile_expr(source, declared, FUNCTIONS)
    assert str(err.value).startswith(message) or message in str(err.value), str(err.value)
    assert "\n | " in str(err.value), "the source line and a caret follow, as in cel-go"


def test_property_names_are_reached_escaped() -> None:
    declared = {"self": Type("object", fields={"x__dash__y": DYN, "__namespace__": DYN})}
    program = compile_expr("self.x__dash__y + self.__namespace__", declared, FUNCTIONS)
    assert program.evaluate({"self": {"x-y": 1, "namespace": 2}}, Meter(100)) == 3


def test_static_cost_grows_with_the_sizes_the_schema_allows() -> None:
    def cost(max_items: int) -> int:
        self_type = list_type(string_type(64), max_items)
        rule = "self.all(x, self.exists(y, x == y))"
        return compile_expr(rule, {"self": self_type}, FUNCTIONS).max_cost

    assert cost(10) < cost(100) < cost(1000)
    assert cost(1000) > 100 * cost(10), "nested iteration is quadratic"


def test_a_runaway_expression_is_stopped_by_its_budget() -> None:
    numbers = list(range(2000))
    started = time.perf_counter()
    with pytest.raises(CostLimitExceeded, match="operation cancelled: actual cost limit exceeded"):
        run("self.all(x, self.all(y, x + y >= 0))", self=numbers)
    assert time.perf_counter() - started < 10, "the per-call limit bounds the time spent"
