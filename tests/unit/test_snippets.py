"""Copy as code (dashboard/snippets.py): every snippet compiles, calls nothing but the framework's
enqueue and the constructors of its values, and its values evaluate back to exactly what was stored.

Values are checked by evaluating the argument expressions of the snippet's own syntax tree, after
proving that they call only value constructors (so evaluating them here runs nothing else).
"""

from __future__ import annotations

import ast
import collections
import datetime
import decimal
import inspect
import math
import uuid
from typing import Any

import pytest
from arq.connections import ArqRedis

from callboard.collectors import snippets
from callboard.collectors.arq import resend as arq_resend
from callboard.collectors.arq.resend import ARQ_OWN_NAMES
from callboard.collectors.dramatiq import resend as dramatiq_resend
from callboard.collectors.literals import literal
from callboard.collectors.model import Framework, JobDetail, StoredCall, Undecodable
from callboard.collectors.snippets import URL_VARIABLE, Snippet
from callboard.collectors.unpickler import placeholder_class

URL = "redis://127.0.0.1:6380/3"

HOSTILE_STRINGS = [
    "",
    "'",
    '"',
    "'''",
    '"""',
    "\\",
    "\\'",
    'end\\"',
    "line\nbreak",
    "\r\n",
    "\x00nul",
    "</pre></code><script>alert(1)</script>",
    "{{ 7 * 7 }}",
    "# not a comment",
    "\"); import os; os.system('id'); (\"",
    "\u2028\u2029\x85\x0c\x0b",
    "\u202eevil\u202c",  # bidi override ("Trojan Source")
    "é日本🎉",
    "\udcff",  # a lone surrogate, as JSON "\udcff" or surrogateescape produce
]

#: Every call a value expression may make: constructors of values, nothing else.
VALUE_CALLS = {
    "float",
    "complex",
    "bytearray",
    "range",
    "set",
    "frozenset",
    "datetime.datetime",
    "datetime.date",
    "datetime.time",
    "datetime.timedelta",
    "datetime.timezone",
    "decimal.Decimal",
    "uuid.UUID",
    "collections.OrderedDict",
}
NAMESPACE = {"datetime": datetime, "decimal": decimal, "uuid": uuid, "collections": collections}


def resend_snippet(job: JobDetail, url: str) -> Snippet:
    """What the job page shows: the shared checks, then the job's own backend's writer."""
    write = dramatiq_resend.write if job.framework is Framework.DRAMATIQ else arq_resend.write
    return snippets.resend_snippet(job, url, write)


def dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    raise AssertionError(f"unexpected callee {ast.dump(node)}")


def calls(tree: ast.AST) -> set[str]:
    return {dotted(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}


def evaluate(node: ast.expr) -> Any:
    """The value of a value expression from a snippet, once proven to call only value constructors."""
    assert calls(node) <= VALUE_CALLS, calls(node)
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    assert names <= {"float", "complex", "bytearray", "range", "set", "frozenset", *NAMESPACE}, names
    return eval(
        compile(ast.Expression(node), "<snippet>", "eval"), {"__builtins__": __builtins__, **NAMESPACE}
    )


def same(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down, NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    return bool(a == b)


def find_call(tree: ast.AST, name: str) -> ast.Call:
    found = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and dotted(n.func) == name]
    assert len(found) == 1, f"{name}: {len(found)} calls"
    return found[0]


def dramatiq_job(args: Any, kwargs: Any, options: dict[str, Any] | None = None, **fields: Any) -> JobDetail:
    defaults: dict[str, Any] = {
        "framework": Framework.DRAMATIQ,
        "queue_key": "dramatiq:default",
        "job_id": "rid-1",
        "state": "dead",
        "name": "send_invoice",
        "ids": (("message id", "mid-1"), ("redis message id", "rid-1")),
    }
    return JobDetail(**{**defaults, **fields}, args=args, kwargs=kwargs, options=options or {})


def arq_job(
    args: tuple[Any, ...], kwargs: dict[Any, Any], serializer: str = "pickle", **fields: Any
) -> JobDetail:
    defaults: dict[str, Any] = {
        "framework": Framework.ARQ,
        "queue_key": "arq:queue",
        "job_id": "0f1e2d",
        "state": "failed",
        "name": "charge",
        "ids": (("job id", "0f1e2d"),),
    }
    return JobDetail(**{**defaults, **fields}, call=StoredCall(args, kwargs, serializer))


def dramatiq_parts(code: str) -> tuple[ast.Call, dict[str, Any]]:
    """The Message(...) call and its evaluated keyword arguments; asserts the snippet does nothing else."""
    tree = ast.parse(code)
    assert calls(tree) - VALUE_CALLS == {
        "RedisBroker",
        "os.environ.get",
        "dramatiq.Message",
        "broker.enqueue",
        "print",
    }, calls(tree)
    message = find_call(tree, "dramatiq.Message")
    assert not message.args
    return message, {k.arg: evaluate(k.value) for k in message.keywords if k.arg is not None}


def arq_parts(code: str) -> tuple[str, list[Any], dict[str, Any]]:
    """The function name, positional args and kwargs of the snippet's enqueue_job call (evaluated)."""
    tree = ast.parse(code)
    assert calls(tree) - VALUE_CALLS <= {
        "create_pool",
        "RedisSettings.from_dsn",
        "os.environ.get",
        "redis.enqueue_job",
        "redis.aclose",
        "print",
        "main",
        "asyncio.run",
        "functools.partial",
        "json.dumps",
        "json.dumps(d).encode",
    }, calls(tree)
    call = find_call(tree, "redis.enqueue_job")
    function, *args = (evaluate(a) for a in call.args)
    kwargs: dict[str, Any] = {}
    for k in call.keywords:
        if k.arg is None:
            kwargs.update(evaluate(k.value))
        else:
            kwargs[k.arg] = evaluate(k.value)
    return function, args, kwargs


# -- literals --------------------------------------------------------------------------------------------

VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -7,
    2**70,
    -(10**5000),  # over Python's 4,300-digit str() limit: written in hex
    0.1,
    -0.0,
    1e308,
    5e-324,
    float("nan"),
    float("inf"),
    -float("inf"),
    complex(1.5, -float("inf")),
    b"\x00\xff'\"\\",
    bytearray(b"ab\n"),
    (),
    (1,),
    (1, "two", (3.0,)),
    [],
    set(),
    {1, "x"},
    frozenset(),
    frozenset({(1, 2)}),
    {},
    {"k": [1, {"n": None}], 2: "int key", (1, 2): "tuple key", None: False},
    collections.OrderedDict([("b", 1), ("a", 2)]),
    range(0, 10, 3),
    datetime.datetime(2024, 2, 29, 23, 59, 59, 999999),
    datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
    datetime.datetime(
        2024, 1, 1, 1, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=-3, minutes=-30), "X'\n")
    ),
    datetime.datetime(2021, 11, 7, 1, 30, fold=1),
    datetime.date(1, 1, 1),
    datetime.time(23, 59, 1, 5, tzinfo=datetime.UTC),
    datetime.timedelta(days=-1, microseconds=3),
    decimal.Decimal("1.10"),
    decimal.Decimal("-0"),
    decimal.Decimal("NaN"),
    decimal.Decimal("-Infinity"),
    decimal.Decimal("1E+1000"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    *HOSTILE_STRINGS,
    [[[[["deep"]]]]],
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: f"{type(v).__name__}")
def test_literal_evaluates_back_to_the_same_value(value: Any) -> None:
    written = literal(value)
    assert written.todos == ()
    assert "\n" not in written.code and "\r" not in written.code
    assert same(evaluate(ast.parse(written.code, mode="eval").body), value), written.code


def test_literal_says_which_imports_it_needs() -> None:
    value = [datetime.date(2024, 1, 1), decimal.Decimal(1), uuid.UUID(int=1), collections.OrderedDict()]
    assert literal(value).imports == {"datetime", "decimal", "uuid", "collections"}
    assert literal([1.0, "x"]).imports == frozenset()


def test_what_cannot_be_rebuilt_becomes_ellipsis_with_a_reason() -> None:
    money = placeholder_class("shop.models", "Money")(5, "EUR")
    looped: list[Any] = [1]
    looped.append(looped)
    deep: list[Any] = []
    for _ in range(150):
        deep = [deep]
    written = literal([money, looped, deep, ValueError("x"), slice(1, 2)])
    tree = ast.parse(written.code, mode="eval")  # valid Python even so
    value = evaluate(tree.body)
    assert (
        value[0] is Ellipsis and value[1] == [1, Ellipsis] and value[3] is Ellipsis and value[4] is Ellipsis
    )
    assert written.todos[0] == "shop.models.Money(5, 'EUR')"
    assert written.todos[1] == "a list that contains itself"
    assert written.todos[2] == "values nested deeper than 100 levels"
    assert len(written.todos) == 5


# -- Dramatiq --------------------------------------------------------------------------------------------


def test_dramatiq_snippet_resends_the_same_call() -> None:
    args = [1, 2**70, 0.5, float("nan"), -float("inf"), True, None, [1, [2, {"x": [None]}]], *HOSTILE_STRINGS]
    kwargs = {s: s for s in HOSTILE_STRINGS} | {"class": 1, "plain": {"nested": [float("inf")]}}
    job = dramatiq_job(args, kwargs, {"max_retries": 3, "time_limit": 1000, "on_failure": "cleanup"})
    snippet = resend_snippet(job, URL)
    assert snippet.code is not None and snippet.notes == ()
    compile(snippet.code, "<snippet>", "exec")
    _, fields = dramatiq_parts(snippet.code)
    assert fields["queue_name"] == "default" and fields["actor_name"] == "send_invoice"
    assert same(fields["args"], args) and same(fields["kwargs"], kwargs)
    assert fields["options"] == {"max_retries": 3, "time_limit": 1000, "on_failure": "cleanup"}
    assert f"os.environ.get({URL_VARIABLE!r}, {URL!r})" in snippet.code
    assert "RedisBroker(url=" in snippet.code and "namespace=" not in snippet.code  # the default one


def test_dramatiq_snippet_drops_the_bookkeeping_options_and_keeps_the_namespace() -> None:
    options = {
        "retries": 2,
        "traceback": "Traceback...",
        "requeue_timestamp": 1_700_000_000_000,
        "redis_message_id": "rid-1",
        "eta": 1_700_000_000_000,
        "max_retries": 5,
    }
    job = dramatiq_job([], {}, options, queue_key="billing:ns:invoices", state="delayed")
    snippet = resend_snippet(job, URL)
    assert snippet.code is not None
    broker = find_call(ast.parse(snippet.code), "RedisBroker")
    assert {k.arg: ast.literal_eval(k.value) for k in broker.keywords if k.arg == "namespace"} == {
        "namespace": "billing:ns"
    }
    _, fields = dramatiq_parts(snippet.code)
    assert fields == {
        "queue_name": "invoices",
        "actor_name": "send_invoice",
        "args": [],
        "kwargs": {},
        "options": {"max_retries": 5},
    }
    assert "delayed until 2023-11-14T22:13:20+00:00" in snippet.code


@pytest.mark.parametrize("name", ["x'); import os #", 'a"\n__import__("os").system("id")', "</pre>"])
def test_hostile_names_stay_inside_strings_and_comments(name: str) -> None:
    for job in (
        dramatiq_job([name], {name: name}, name=name, job_id=name, ids=(("message id", name),)),
        arq_job((name,), {name: name}, name=name, job_id=name, queue_key=name),
    ):
        snippet = resend_snippet(job, URL)
        assert snippet.code is not None
        tree = ast.parse(snippet.code)  # parses, and calls only what the framework's snippet calls:
        if job.framework is Framework.DRAMATIQ:
            _, fields = dramatiq_parts(snippet.code)
            assert (
                fields["actor_name"] == name and fields["args"] == [name] and fields["kwargs"] == {name: name}
            )
        else:
            function, args, kwargs = arq_parts(snippet.code)
            assert function == name and args == [name] and kwargs == {"_queue_name": name, name: name}
        comments = [line for line in snippet.code.splitlines() if line.lstrip().startswith("#")]
        assert all(line.isascii() for line in comments)
        assert all(
            isinstance(s, ast.Import | ast.ImportFrom | ast.Assign | ast.Expr | ast.AsyncFunctionDef)
            for s in tree.body
        )


def test_the_password_never_appears() -> None:
    for url in ("redis://alice:s3cr3t-pw@redis.example:6379/2", "redis://h:6379/0?password=s3cr3t-pw&x=1"):
        for job in (dramatiq_job([1], {}), arq_job((1,), {})):
            snippet = resend_snippet(job, url)
            assert snippet.code is not None
            assert "s3cr3t" not in snippet.code and "s3cr3t" not in " ".join(snippet.notes)
            # With a password the URL must come from the environment: no default that cannot work.
            assert f"os.environ[{URL_VARIABLE!r}]" in snippet.code and "PASSWORD" in snippet.code
            compile(snippet.code, "<snippet>", "exec")


def test_undecodable_and_malformed_jobs_get_a_note_instead_of_code() -> None:
    undecodable = dramatiq_job(
        None, None, undecodable=Undecodable("not JSON: ValueError", 10, "{oops"), name=None
    )
    assert resend_snippet(undecodable, URL).code is None
    assert "could not be decoded (not JSON: ValueError)" in resend_snippet(undecodable, URL).notes[0]
    assert resend_snippet(dramatiq_job({"not": "a list"}, {}), URL).code is None
    assert resend_snippet(dramatiq_job([1], {}, name=None), URL).code is None
    no_call = JobDetail(Framework.ARQ, "arq:queue", "j", "failed", "f", (("job id", "j"),))
    assert resend_snippet(no_call, URL).notes == (
        "No code: the job's args are not a list or its kwargs not a dict.",
    )


def test_a_huge_payload_gets_no_snippet() -> None:
    snippet = resend_snippet(dramatiq_job(["\x00" * 300_000], {}), URL)  # 4 characters per NUL once escaped
    assert snippet.code is None and "over 1,000,000 characters" in snippet.notes[0]


# -- Arq -------------------------------------------------------------------------------------------------


def test_arq_snippet_resends_the_same_call() -> None:
    args = (
        1,
        (2, "tuple"),
        {3, 4},
        b"\x00'",
        datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        decimal.Decimal("9.99"),
        uuid.UUID(int=7),
        float("nan"),
        *HOSTILE_STRINGS,
    )
    kwargs = {"plain": [1.5], "class": 2, "not an id": 3, "é": 4, "ﬁle": 5, "": 6}
    snippet = resend_snippet(arq_job(args, kwargs), URL)
    assert snippet.code is not None and snippet.notes == ()
    compile(snippet.code, "<snippet>", "exec")
    function, sent_args, sent_kwargs = arq_parts(snippet.code)
    assert function == "charge"
    assert same(sent_args, list(args))
    assert same(sent_kwargs, {"_queue_name": "arq:queue", **kwargs})
    assert "import datetime\nimport decimal\nimport os\nimport uuid\n" in snippet.code
    assert "# _job_id='0f1e2d'," in snippet.code  # offered, not used
    assert "\n            plain=[1.5],\n" in snippet.code  # identifiers as plain keywords
    assert (
        "**{'\\ufb01le': 5}," in snippet.code or "**{'ﬁle': 5}," in snippet.code
    )  # NFKC would make it 'file'


def test_arq_kwargs_that_enqueue_job_takes_for_itself_are_left_out_and_flagged() -> None:
    kwargs = {"_job_id": "x", "_defer_by": 5, "function": "f", "self": 1, 7: "int key", "ok": True}
    snippet = resend_snippet(arq_job((), kwargs), URL)
    assert snippet.code is not None
    _, _, sent = arq_parts(snippet.code)
    assert sent == {"_queue_name": "arq:queue", "ok": True}
    assert len(snippet.notes) == 5
    assert "The kwarg _job_id is left out: it is a parameter of enqueue_job() itself" in snippet.notes[0]
    assert "The kwarg 7 is left out: it is not a string" in snippet.notes[4]
    assert "# TODO: kwarg '_defer_by' is a parameter of enqueue_job() itself" in snippet.code


def test_arq_own_names_are_enqueue_jobs_parameters() -> None:
    params = inspect.signature(ArqRedis.enqueue_job).parameters.values()
    named = {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    assert named == ARQ_OWN_NAMES


def test_arq_placeholders_become_marked_ellipses() -> None:
    customer = placeholder_class("billing.models", "Customer")(42)
    snippet = resend_snippet(arq_job((1, [customer, 2]), {"who": customer}), URL)
    assert snippet.code is not None
    compile(snippet.code, "<snippet>", "exec")
    _, args, kwargs = arq_parts(snippet.code)
    assert args == [1, [Ellipsis, 2]] and kwargs["who"] is Ellipsis
    assert "[..., 2],  # TODO: billing.models.Customer(42) cannot be rebuilt from Redis" in snippet.code
    assert "who=...,  # TODO: billing.models.Customer(42) cannot be rebuilt from Redis" in snippet.code
    assert snippet.notes and snippet.notes[0].startswith("2 value(s) cannot be rebuilt from Redis")


def test_arq_deferred_job_offers_its_due_time() -> None:
    job = arq_job((), {}, state="deferred", timestamps=(("enqueued", 1.0), ("due", 1_700_000_000.5)))
    snippet = resend_snippet(job, URL)
    assert snippet.code is not None and "import datetime\n" in snippet.code
    line = next(s for s in snippet.code.splitlines() if "_defer_until=" in s)
    assert line.strip().startswith("# _defer_until=datetime.datetime(2023, 11, 14")
    value = eval(line.strip()[len("# _defer_until=") :].split(",  #")[0], NAMESPACE)
    assert value.timestamp() == 1_700_000_000.5


@pytest.mark.parametrize(("serializer", "expected"), [("msgpack", "msgpack.packb"), ("json", "json.dumps")])
def test_arq_snippet_uses_the_workers_serializer(serializer: str, expected: str) -> None:
    snippet = resend_snippet(arq_job((1,), {}, serializer), URL)
    assert snippet.code is not None and expected in snippet.code
    assert f"import {serializer}\n" in snippet.code
    compile(snippet.code, "<snippet>", "exec")
    assert "job_serializer=" not in (resend_snippet(arq_job((1,), {}), URL).code or "x")
