"""The CEL function library kube-apiserver offers validation rules.

CEL's standard functions (``size``, ``contains``, ``matches``, conversions, timestamp and
duration accessors) and Kubernetes' extension libraries, as documented at
https://kubernetes.io/docs/reference/using-api/cel/ and implemented in
``k8s.io/apiserver/pkg/cel/library`` and cel-go's ``ext`` package:

- lists: ``isSorted``, ``sum``, ``min``, ``max``, ``indexOf``, ``lastIndexOf``, ``slice``,
  ``flatten``, ``reverse``, ``distinct``, ``sort``;
- strings: ``charAt``, ``indexOf``, ``lastIndexOf``, ``lowerAscii``, ``upperAscii``,
  ``replace``, ``split``, ``substring``, ``trim``, ``join``, ``format``, ``reverse``,
  ``strings.quote``;
- regex: ``find``, ``findAll``; URLs: ``url``, ``isURL``, ``getScheme``, ``getHost``,
  ``getHostname``, ``getPort``, ``getEscapedPath``, ``getQuery``;
- quantities: ``quantity``, ``isQuantity``, ``sign``, ``isInteger``, ``asInteger``,
  ``asApproximateFloat``, ``add``, ``sub``, ``isGreaterThan``, ``isLessThan``, ``compareTo``;
- optionals: ``optional.of``, ``optional.none``, ``optional.ofNonZeroValue``, ``hasValue``,
  ``value``, ``orValue``, ``or``; sets: ``sets.contains``, ``sets.equivalent``,
  ``sets.intersects``.

Regular expressions are RE2 in kube-apiserver and Python's ``re`` here; the two agree on the
syntax rules use in practice (classes, anchors, repetition), not on every corner.
"""

from __future__ import annotations

import urllib.parse
from decimal import Decimal

from arges.apiserver.celk8slib import (
    Quantity,
    fn_as_integer,
    fn_hostname,
    fn_is_integer,
    fn_is_quantity,
    fn_is_url,
    fn_opt,
    fn_opt_value,
    fn_port,
    fn_q,
    fn_q_arith,
    fn_q_compare,
    fn_quantity,
    fn_query,
    fn_set_contains,
    fn_set_equivalent,
    fn_set_intersects,
    fn_url,
    fn_url_part,
    fn_zero,
)
from arges.apiserver.cellists import (
    fn_distinct,
    fn_extreme,
    fn_flatten,
    fn_index_of,
    fn_is_sorted,
    fn_reverse,
    fn_slice,
    fn_sort,
    fn_sum,
)
from arges.apiserver.celnodes import Function
from arges.apiserver.celstdlib import (
    elem_type,
    fn_contains,
    fn_ends,
    fn_matches,
    fn_size,
    fn_starts,
    fn_time_getter,
    fn_to_bool,
    fn_to_bytes,
    fn_to_double,
    fn_to_duration,
    fn_to_int,
    fn_to_string,
    fn_to_timestamp,
    fn_to_uint,
    fn_type_of,
    fn_whole,
    sig,
    size_cost,
)
from arges.apiserver.celstrings import (
    fn_char_at,
    fn_find,
    fn_find_all,
    fn_format,
    fn_join,
    fn_lower,
    fn_quote,
    fn_replace,
    fn_split,
    fn_substring,
    fn_trim,
    fn_upper,
)
from arges.apiserver.celtypes import (
    BOOL,
    DOUBLE,
    DURATION,
    DYN,
    INT,
    TIMESTAMP,
    TYPE,
    UINT,
    Type,
    list_type,
    map_type,
    string_type,
)
from arges.apiserver.celvalues import (
    Optional,
)

STRING = string_type()
QUANTITY = Type("quantity")
"""The static type of :class:`~arges.apiserver.celk8slib.Quantity` values."""
URL_TYPE = Type("url")
"""The static type of :class:`~arges.apiserver.celk8slib.URL` values."""


STR = ("string",)
LIST = ("list",)
NUM = ("int", "uint", "double")
TIME = ("timestamp",)
TIME_OR_DURATION = ("timestamp", "duration")
ANY = ("*",)


def _same_elem(types: list[Type]) -> Type:
    return elem_type(types)


def _optional_of(types: list[Type]) -> Type:
    return Type("optional", types[0] if types else DYN)


def _optional_inner(types: list[Type]) -> Type:
    return types[0].elem or DYN if types and types[0].kind == "optional" else DYN


FUNCTIONS: dict[str, Function] = {
    "size": Function(fn_size, sig(INT, (("string", "bytes", "list", "map"),)), glob=True),
    "contains": Function(fn_contains, sig(BOOL, (STR, STR)), size_cost()),
    "startsWith": Function(fn_starts, sig(BOOL, (STR, STR)), size_cost(1)),
    "endsWith": Function(fn_ends, sig(BOOL, (STR, STR)), size_cost(1)),
    "matches": Function(fn_matches, sig(BOOL, (STR, STR)), size_cost(), glob=True),
    "int": Function(fn_to_int, sig(INT, (ANY,)), member=False, glob=True),
    "uint": Function(fn_to_uint, sig(UINT, (ANY,)), member=False, glob=True),
    "double": Function(fn_to_double, sig(DOUBLE, (ANY,)), member=False, glob=True),
    "string": Function(fn_to_string, sig(STRING, (ANY,)), member=False, glob=True),
    "bytes": Function(fn_to_bytes, sig(Type("bytes"), (ANY,)), member=False, glob=True),
    "bool": Function(fn_to_bool, sig(BOOL, (ANY,)), member=False, glob=True),
    "duration": Function(fn_to_duration, sig(DURATION, (ANY,)), member=False, glob=True),
    "timestamp": Function(fn_to_timestamp, sig(TIMESTAMP, (ANY,)), member=False, glob=True),
    "type": Function(fn_type_of, sig(TYPE, (ANY,)), member=False, glob=True),
    "getFullYear": Function(fn_time_getter(lambda t: t.year, None), sig(INT, (TIME,), (TIME, STR))),
    "getMonth": Function(
        fn_time_getter(lambda t: t.month - 1, None), sig(INT, (TIME,), (TIME, STR))
    ),
    "getDate": Function(fn_time_getter(lambda t: t.day, None), sig(INT, (TIME,), (TIME, STR))),
    "getDayOfMonth": Function(
        fn_time_getter(lambda t: t.day - 1, None), sig(INT, (TIME,), (TIME, STR))
    ),
    "getDayOfWeek": Function(
        fn_time_getter(lambda t: (t.weekday() + 1) % 7, None), sig(INT, (TIME,), (TIME, STR))
    ),
    "getDayOfYear": Function(
        fn_time_getter(lambda t: t.timetuple().tm_yday - 1, None), sig(INT, (TIME,), (TIME, STR))
    ),
    "getHours": Function(
        fn_time_getter(lambda t: t.hour, lambda d: fn_whole(d, 3600)),
        sig(INT, (TIME_OR_DURATION,), (TIME, STR)),
    ),
    "getMinutes": Function(
        fn_time_getter(lambda t: t.minute, lambda d: fn_whole(d, 60)),
        sig(INT, (TIME_OR_DURATION,), (TIME, STR)),
    ),
    "getSeconds": Function(
        fn_time_getter(lambda t: t.second, lambda d: fn_whole(d, 1)),
        sig(INT, (TIME_OR_DURATION,), (TIME, STR)),
    ),
    "getMilliseconds": Function(
        fn_time_getter(lambda t: t.microsecond // 1000, lambda d: fn_whole(d, 1e-3)),
        sig(INT, (TIME_OR_DURATION,), (TIME, STR)),
    ),
    # Kubernetes list library.
    "isSorted": Function(fn_is_sorted, sig(BOOL, (LIST,)), size_cost()),
    "sum": Function(fn_sum, sig(_same_elem, (LIST,)), size_cost()),
    "min": Function(fn_extreme(-1), sig(_same_elem, (LIST,)), size_cost()),
    "max": Function(fn_extreme(1), sig(_same_elem, (LIST,)), size_cost()),
    "indexOf": Function(
        fn_index_of(False), sig(INT, (STR, STR), (STR, STR, ("int",)), (LIST, ANY)), size_cost()
    ),
    "lastIndexOf": Function(
        fn_index_of(True), sig(INT, (STR, STR), (STR, STR, ("int",)), (LIST, ANY)), size_cost()
    ),
    "slice": Function(fn_slice, sig(lambda t: t[0], (LIST, ("int",), ("int",))), size_cost()),
    "flatten": Function(fn_flatten, sig(list_type(DYN), (LIST,), (LIST, ("int",))), size_cost()),
    "reverse": Function(fn_reverse, sig(lambda t: t[0], (LIST,), (STR,)), size_cost()),
    "distinct": Function(fn_distinct, sig(lambda t: t[0], (LIST,)), size_cost()),
    "sort": Function(fn_sort, sig(lambda t: t[0], (LIST,)), size_cost()),
    # Kubernetes string library (cel-go ext strings).
    "charAt": Function(fn_char_at, sig(STRING, (STR, ("int",)))),
    "lowerAscii": Function(fn_lower, sig(lambda t: t[0], (STR,)), size_cost()),
    "upperAscii": Function(fn_upper, sig(lambda t: t[0], (STR,)), size_cost()),
    "replace": Function(
        fn_replace, sig(STRING, (STR, STR, STR), (STR, STR, STR, ("int",))), size_cost()
    ),
    "split": Function(
        fn_split, sig(list_type(STRING), (STR, STR), (STR, STR, ("int",))), size_cost()
    ),
    "substring": Function(
        fn_substring, sig(lambda t: t[0], (STR, ("int",)), (STR, ("int",), ("int",)))
    ),
    "trim": Function(fn_trim, sig(lambda t: t[0], (STR,)), size_cost()),
    "join": Function(fn_join, sig(STRING, (LIST,), (LIST, STR)), size_cost()),
    "format": Function(fn_format, sig(STRING, (STR, LIST)), size_cost()),
    "strings.quote": Function(fn_quote, sig(STRING, (STR,)), size_cost(), member=False, glob=True),
    # Kubernetes regex library.
    "find": Function(fn_find, sig(STRING, (STR, STR)), size_cost()),
    "findAll": Function(
        fn_find_all, sig(list_type(STRING), (STR, STR), (STR, STR, ("int",))), size_cost()
    ),
    # Kubernetes URL library.
    "url": Function(fn_url, sig(URL_TYPE, (STR,)), size_cost(), member=False, glob=True),
    "isURL": Function(fn_is_url, sig(BOOL, (STR,)), size_cost(), member=False, glob=True),
    "getScheme": Function(fn_url_part(lambda p: p.scheme), sig(STRING, (("url",),))),
    "getHost": Function(
        fn_url_part(lambda p: p.netloc.rpartition("@")[2]), sig(STRING, (("url",),))
    ),
    "getHostname": Function(fn_url_part(fn_hostname), sig(STRING, (("url",),))),
    "getPort": Function(fn_url_part(fn_port), sig(STRING, (("url",),))),
    "getEscapedPath": Function(
        fn_url_part(
            lambda p: urllib.parse.quote(urllib.parse.unquote(p.path), safe="/:@!$&'()*+,;=")
        ),
        sig(STRING, (("url",),)),
    ),
    "getQuery": Function(fn_url_part(fn_query), sig(map_type(list_type(STRING)), (("url",),))),
    # Kubernetes quantity library.
    "quantity": Function(fn_quantity, sig(QUANTITY, (STR,)), member=False, glob=True),
    "isQuantity": Function(fn_is_quantity, sig(BOOL, (STR,)), member=False, glob=True),
    "sign": Function(
        lambda m, a: fn_q(a[0]).cel_compare(Quantity(Decimal(0), "0")), sig(INT, (("quantity",),))
    ),
    "isInteger": Function(fn_is_integer, sig(BOOL, (("quantity",),))),
    "asInteger": Function(fn_as_integer, sig(INT, (("quantity",),))),
    "asApproximateFloat": Function(
        lambda m, a: float(fn_q(a[0]).amount), sig(DOUBLE, (("quantity",),))
    ),
    "add": Function(fn_q_arith(1), sig(QUANTITY, (("quantity",), ("quantity", "int")))),
    "sub": Function(fn_q_arith(-1), sig(QUANTITY, (("quantity",), ("quantity", "int")))),
    "isGreaterThan": Function(
        fn_q_compare(lambda c: c > 0), sig(BOOL, (("quantity",), ("quantity",)))
    ),
    "isLessThan": Function(
        fn_q_compare(lambda c: c < 0), sig(BOOL, (("quantity",), ("quantity",)))
    ),
    "compareTo": Function(fn_q_compare(lambda c: c), sig(INT, (("quantity",), ("quantity",)))),
    # Optionals.
    "optional.of": Function(
        lambda m, a: Optional(a[0], True), sig(_optional_of, (ANY,)), member=False, glob=True
    ),
    "optional.ofNonZeroValue": Function(
        lambda m, a: Optional(a[0], not fn_zero(a[0])),
        sig(_optional_of, (ANY,)),
        member=False,
        glob=True,
    ),
    "optional.none": Function(
        lambda m, a: Optional(), sig(Type("optional", DYN), ()), member=False, glob=True
    ),
    "hasValue": Function(lambda m, a: fn_opt(a[0]).present, sig(BOOL, (("optional",),))),
    "value": Function(fn_opt_value, sig(_optional_inner, (("optional",),))),
    "orValue": Function(
        lambda m, a: fn_opt(a[0]).value if fn_opt(a[0]).present else a[1],
        sig(_optional_inner, (("optional",), ANY)),
    ),
    "or": Function(
        lambda m, a: a[0] if fn_opt(a[0]).present else fn_opt(a[1]),
        sig(lambda t: t[0], (("optional",), ("optional",))),
    ),
    # Sets.
    "sets.contains": Function(
        fn_set_contains, sig(BOOL, (LIST, LIST)), size_cost(), member=False, glob=True
    ),
    "sets.equivalent": Function(
        fn_set_equivalent, sig(BOOL, (LIST, LIST)), size_cost(), member=False, glob=True
    ),
    "sets.intersects": Function(
        fn_set_intersects, sig(BOOL, (LIST, LIST)), size_cost(), member=False, glob=True
    ),
}
"""Every function rules may call, by name (member calls take the receiver as first argument)."""
