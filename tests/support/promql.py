"""A sanity check of PromQL expressions, in Python, which runs where promtool is not built (it is
opt-in: tests/setup.d/29-prometheus.sh; tests/test_prometheus_rules.py uses it). Not a parser of
the whole language, only of what the chart's rules and dashboard use, strictly enough that a
typo fails. Balanced brackets; every call a known function or aggregation; label matchers well
formed; range selectors with a duration; ``rate``/``increase`` over a range of a counter or a
histogram's buckets; ``histogram_quantile`` over buckets, by ``le``, with a quantile in [0, 1].
Plus the metric names an expression reads (the ``j2k_`` identifiers)."""

from __future__ import annotations

import re
from collections.abc import Iterable

FUNCTIONS = {"rate", "increase", "histogram_quantile", "absent", "vector", "clamp_min"}
AGGREGATIONS = {"sum", "max", "min", "avg", "count"}
CLAUSES = {"by", "without", "on", "ignoring"}
KEYWORDS = {"or", "and", "unless", "bool"}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
TOKEN = re.compile(
    r'\s+|(?P<string>"(?:[^"\\]|\\.)*")|(?P<number>[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?(?![a-z]))'
    r"|(?P<duration>[0-9]+(?:ms|s|m|h|d|w|y)(?:[0-9]+(?:ms|s|m|h|d|w|y))*)"
    r"|(?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)|(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}\[\]])"
)
MATCHER = re.compile(r'^[a-zA-Z_][a-zA-Z0-9_]*(=~|!~|!=|=)"(?:[^"\\]|\\.)*"$')
#: Grafana's variables, replaced by what they stand for in a query
GRAFANA_VARIABLES = re.compile(r"\$(__rate_interval|__interval|__range)")


def tokens(expr: str) -> list[tuple[str, str]]:
    """(kind, text) of each token; raises ValueError on a character PromQL does not have."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = TOKEN.match(expr, pos)
        if not match or match.end() == pos:
            raise ValueError(f"unexpected {expr[pos : pos + 10]!r} at {pos} in {expr!r}")
        pos = match.end()
        if match.lastgroup:
            out.append((match.lastgroup, match.group()))
    return out


def metric_names(expr: str) -> set[str]:
    """The metric names (``j2k_`` identifiers outside strings) an expression reads."""
    toks = tokens(GRAFANA_VARIABLES.sub("5m", expr))
    return {text for kind, text in toks if kind == "ident" and text.startswith("j2k_")}


def problems(expr: str) -> list[str]:
    """What is wrong with ``expr`` (empty: nothing this check can see)."""
    expr = GRAFANA_VARIABLES.sub("5m", expr)
    try:
        toks = tokens(expr)
    except ValueError as exc:
        return [str(exc)]
    found: list[str] = []
    closing = {")": "(", "}": "{", "]": "["}
    stack: list[int] = []
    groups: dict[int, int] = {}  # index of an opening bracket -> index of its closing one
    for i, (kind, text) in enumerate(toks):
        if text in "({[" and kind == "op":
            stack.append(i)
        elif text in closing and kind == "op":
            if not stack or toks[stack[-1]][1] != closing[text]:
                return [f"unbalanced {text!r} in {expr!r}"]
            groups[stack.pop()] = i
    if stack:
        return [f"unclosed {toks[stack[-1]][1]!r} in {expr!r}"]
    for i, (kind, text) in enumerate(toks):
        following = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "ident" and following == "(":
            known = FUNCTIONS | AGGREGATIONS | CLAUSES
            if text not in known:
                found.append(f"unknown function {text!r}")
                continue
            inner = toks[i + 2 : groups[i + 1]]
            found += _call_problems(text, inner)
        elif kind == "ident" and text in AGGREGATIONS and following in CLAUSES:
            after = groups.get(i + 2)  # the label list's closing parenthesis
            if toks[i + 2][1] != "(" or after is None or toks[after + 1][1] != "(":
                found.append(f"{text} {following} without a label list and an argument")
            else:
                found += _call_problems(text, toks[after + 2 : groups[after + 1]])
        elif kind == "ident" and text in CLAUSES:
            found.append(f"{text!r} without a label list")
        elif text == "{" and kind == "op":
            found += _matcher_problems(toks[i + 1 : groups[i]])
        elif text == "[" and kind == "op":
            body = "".join(t for _, t in toks[i + 1 : groups[i]])
            if not DURATION.match(body):
                found.append(f"range [{body}] is not a duration")
        elif (
            kind == "ident"
            and text not in KEYWORDS
            and not text.startswith("j2k_")
            and not _in_label_list(toks, i, groups)
        ):
            found.append(f"unknown identifier {text!r}")
    return [f"{p} in {expr!r}" for p in found]


def _call_problems(name: str, inner: list[tuple[str, str]]) -> list[str]:
    text = "".join(t for _, t in inner)
    names = {t for k, t in inner if k == "ident" and t.startswith("j2k_")}
    if name in {"rate", "increase"}:
        if not inner or inner[-1][1] != "]":
            return [f"{name}() of no range vector"]
        if not names or not all(n.endswith(("_total", "_bucket")) for n in names):
            return [f"{name}() of something not a counter: {sorted(names)}"]
    if name == "histogram_quantile":
        quantile = inner[0][1] if inner and inner[0][0] == "number" else ""
        if not quantile or not 0 <= float(quantile) <= 1:
            return [f"histogram_quantile with quantile {quantile!r}"]
        if not names or not all(n.endswith("_bucket") for n in names):
            return [f"histogram_quantile() of no buckets: {sorted(names)}"]
        if not re.search(r"by\(([a-z_,]*,)?le(,[a-z_]*)*\)", text):
            return ["histogram_quantile() not aggregated by le"]
    return []


def _matcher_problems(inner: list[tuple[str, str]]) -> list[str]:
    parts: list[list[str]] = [[]]
    for _, text in inner:
        if text == ",":
            parts.append([])
        else:
            parts[-1].append(text)
    return [
        f"bad label matcher {''.join(p)!r}" for p in parts if p and not MATCHER.match("".join(p))
    ]


def _in_label_list(toks: list[tuple[str, str]], i: int, groups: dict[int, int]) -> bool:
    """Token ``i`` is a label name: in a matcher's braces, or in a by/without/on list."""
    for start, end in groups.items():
        if start < i < end:
            opener = toks[start][1]
            if opener == "{":
                return True
            if opener == "(" and start > 0 and toks[start - 1][1] in CLAUSES:
                return True
    return False


def all_problems(exprs: Iterable[str]) -> list[str]:
    return [p for expr in exprs for p in problems(expr)]
