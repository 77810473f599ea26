"""The HTTP API under random and malformed requests (Hypothesis, through Django's test client):
random bodies, wrong types, huge and odd unicode strings, broken JSON and forms, wrong methods,
odd ids and headers, on every endpoint. Never a 500; on the JSON API every 4xx is JSON with a
message. Bounded: a fixed number of examples per test, the whole file in well under a minute.

`HOSTILE_JSON` writes JSON text by hand, where a JSON library would refuse to: lone surrogates
(`"\\ud800"`), invalid UTF-8, nesting deeper than Python's recursion limit, integers of
thousands of digits, NaN, NUL. Random JSON values never held those, and each was a 500.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.test import Client, override_settings
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from arena import services
from arena.messages import Finish
from arena.models import Battle, Response
from arena.streams import redis_client

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same examples every run: a CI failure reproduces locally
)
METHODS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "application/octet-stream",
        "",
    ]
)
# Odd text: any code point (surrogates and NULs included), sometimes very long.
TEXT = st.one_of(
    st.text(max_size=50),
    st.text(alphabet=st.characters(codec=None), max_size=200),
    st.sampled_from(["", " ", "\x00", "\ud800", "a" * 9000, "🙂" * 3000, "%s%n{0}", "../.."]),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def hostile_values(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A JSON value's text that no body may carry into the arena, and whether it must be refused
    as such (False: stray control characters, which a prompt may hold)."""
    kind = draw(st.sampled_from(["surrogate", "utf8", "deep", "number", "nul", "control"]))
    text = draw(st.text(alphabet="abc ", max_size=5)).encode()
    if kind == "surrogate":  # a lone half of a pair, as an escape: valid JSON, invalid text
        half = draw(st.integers(0xD800, 0xDFFF))
        after = draw(st.sampled_from([b"", b"x", b"\\u0041", b"\\ud800"]))
        return b'"' + text + b"\\u%04x" % half + after + b'"', True
    if kind == "utf8":  # raw bytes that are not UTF-8: a surrogate, overlong NUL, a cut sequence
        raw = draw(
            st.sampled_from([b"\xed\xa0\x80", b"\xc0\x80", b"\xff", b"\xe2\x82", b"\xf4\x90"])
        )
        return b'"' + text + raw + text + b'"', True
    if kind == "deep":
        depth = draw(st.sampled_from([33, 999, 1025, 5000, 100_000]))
        inner = draw(st.sampled_from([b"", b"1", b'"x"']))
        if draw(st.booleans()):
            return b"[" * depth + inner + b"]" * depth, True
        return b'{"a":' * depth + (inner or b"1") + b"}" * depth, True
    if kind == "number":
        digits = draw(st.integers(19, 12_000))
        sign = draw(st.sampled_from([b"", b"-"]))
        exponent = draw(st.sampled_from([b"", b".5", b"e999", b"E-99999"]))
        special = draw(st.sampled_from([None, b"NaN", b"Infinity", b"-Infinity", b"1e999"]))
        return special or sign + b"9" * digits + exponent, True
    if kind == "nul":
        return b'"' + text + draw(st.sampled_from([b"\\u0000", b"\x00"])) + text + b'"', True
    control = draw(st.lists(st.integers(1, 31).filter(lambda c: c not in (9, 10, 13)), min_size=1))
    escaped = b"".join(b"\\u%04x" % c for c in control)
    return b'"' + b"Hi " + escaped + text + b'"', False


@st.composite
def hostile_bodies(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A JSON object whose prompt and choice hold a hostile value (sometimes deeper in)."""
    value, refuse = draw(hostile_values())
    if draw(st.booleans()):
        value, refuse = b"[" + value + b"]", True  # a prompt must be a string
    return b'{"prompt": ' + value + b', "choice": ' + value + b"}", refuse


HOSTILE_JSON = hostile_bodies()
# Query strings and ids made of any bytes, percent-encoded as a client may send them.
RAW_QUERY = st.one_of(
    st.binary(max_size=40).map(lambda b: quote(b, safe="")),
    st.sampled_from(["%ff", "%ed%a0%80", "%00", "%c0%80", "9" * 5000, "%5B" * 2000, "%25", "&&=="]),
)
FIELDS = st.sampled_from(["prompt", "choice", "category", "style_control", "x"])
BODY_OBJECTS = st.dictionaries(FIELDS | st.text(max_size=8), JSON, max_size=4)
RAW_BODIES = st.one_of(
    BODY_OBJECTS.map(lambda d: json.dumps(d).encode()),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"{",
            b"{nope",
            b"\xff\xfe",
            b'{"prompt": "\\ud800"}',
            b"[]",
            b"null",
            b"1e999",
            b'{"prompt": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            b"--xyz\r\nbroken",
            b"a=1&" * 2000,
            b'{"prompt": "' + b"x" * 3_000_000 + b'"}',
        ]
    ),
    HOSTILE_JSON.map(lambda body: body[0]),
)


IDS = st.one_of(st.text(min_size=1, max_size=40).filter(lambda s: "/" not in s), st.just("x" * 300))
API_PREFIXES = ("/battles", "/api/")
# Lone surrogates go out as the invalid UTF-8 bytes a hostile client could send.
ODD = "surrogatepass"


@pytest.fixture(autouse=True)
def _open_limits(settings: Any) -> None:
    """High rate limits: the fuzzing is about input, not about the 429s it would soon get."""
    redis_client().flushdb()
    settings.ARENA_BATTLES_PER_MINUTE = 10**6
    settings.ARENA_BATTLES_PER_IP_MINUTE = 10**6
    settings.ARENA_BATTLES_PER_IP_DAY = 10**6
    settings.ARENA_VOTES_PER_MINUTE = 10**6


@pytest.fixture
def visitor(cast: dict) -> tuple[Client, str, str]:
    """A session with two battles of its own: one answered (votable), one still queued."""
    client = Client()
    done = client.post("/battles", {"prompt": "Hi"}, content_type="application/json").json()["id"]
    queued = client.post("/battles", {"prompt": "Yo"}, content_type="application/json").json()
    for response in Response.objects.filter(turn__battle_id=done):
        claimed = services.response_claim(response_id=response.id)
        assert claimed is not None
        services.response_complete(
            response=claimed, text="fine", finish=Finish(1, 1, "stop"), ttft_ms=1, latency_ms=1
        )
    return client, done, queued["id"]


def _check(reply: Any, path: str, method: str) -> None:
    assert reply.status_code < 500, (method, path, reply.status_code, reply.content[:300])
    if path.startswith(API_PREFIXES) and 400 <= reply.status_code < 500 and method != "HEAD":
        assert reply["Content-Type"].startswith("application/json"), (method, path, reply)
        message = json.loads(reply.content)["error"]
        assert isinstance(message, str) and message.strip(), (method, path, message)


async def _read(reply: Any) -> bytes:
    return b"".join([chunk async for chunk in reply.streaming_content])


def _send(client: Client, method: str, path: str, body: bytes, content_type: str) -> Any:
    kwargs: dict[str, Any] = {"data": body, "content_type": content_type}
    if method in ("GET", "HEAD", "OPTIONS"):
        kwargs = {}
    return client.generic(method, path, **kwargs)


@FUZZ
@given(method=METHODS, body=RAW_BODIES, content_type=CONTENT_TYPES, which=st.integers(0, 5))
def test_battle_endpoints_never_fail_with_500(
    visitor: tuple[Client, str, str], method: str, body: bytes, content_type: str, which: int
) -> None:
    client, done, queued = visitor
    battle_id = (done, queued)[which % 2]
    path = ["/battles", f"/battles/{battle_id}", f"/battles/{battle_id}/turns",
            f"/battles/{battle_id}/regenerate", f"/battles/{battle_id}/vote",
            f"/battles/{done}/stream"][which]  # fmt: skip
    _check(_send(client, method, path, body, content_type), path, method)


@FUZZ
@given(body=BODY_OBJECTS, which=st.sampled_from(["", "/turns", "/vote", "/regenerate"]))
def test_wrong_types_in_json_fields_get_a_clear_4xx(
    visitor: tuple[Client, str, str], body: dict, which: str
) -> None:
    client, done, _ = visitor
    path = "/battles" if which == "" and len(body) % 2 else f"/battles/{done}{which}"
    reply = client.post(path, json.dumps(body), content_type="application/json")
    _check(reply, path, "POST")


@FUZZ
@given(battle_id=IDS, suffix=st.sampled_from(["", "/turns", "/regenerate", "/vote", "/stream"]),
       method=METHODS, last_event_id=TEXT)  # fmt: skip
def test_unknown_odd_ids_and_event_ids_are_4xx(
    visitor: tuple[Client, str, str], battle_id: str, suffix: str, method: str, last_event_id: str
) -> None:
    client, done, _ = visitor
    path = f"/battles/{quote(battle_id, safe='', errors=ODD)}{suffix}"
    _check(client.generic(method, path), path, method)
    # A finished battle's stream, resumed from any event id a client may send.
    stream = f"/battles/{done}/stream?{urlencode({'last_event_id': last_event_id}, errors=ODD)}"
    reply = client.get(stream)
    _check(reply, stream, "GET")
    if reply.status_code == 200:
        text = async_to_sync(_read)(reply).decode()
        assert text.rstrip().endswith("event: end\ndata: {}")


@FUZZ
@given(
    path=st.sampled_from(["/api/leaderboard", "/api/leaderboard.csv", "/api/models/{}",
                          "/leaderboard", "/leaderboard/models/{}"]),
    name=IDS, query=st.dictionaries(FIELDS | st.text(max_size=8), TEXT, max_size=3),
    method=METHODS,
)  # fmt: skip
def test_leaderboard_pages_and_api_never_fail_with_500(
    db: None, path: str, name: str, query: dict, method: str
) -> None:
    full = path.format(quote(name, safe="", errors=ODD)) + "?" + urlencode(query, errors=ODD)
    _check(Client().generic(method, full), full, method)


@FUZZ
@given(fields=st.dictionaries(
    st.sampled_from(["format", "file_format", "since", "until", "models", "categories",
                     "languages", "min_turns", "max_turns", "include_invalid", "dedup",
                     "dedup_percentile", "exclude_moderated", "split", "seed", "x"]),
    TEXT, max_size=6),
    method=st.sampled_from(["GET", "POST", "PUT"]))  # fmt: skip
def test_staff_export_form_never_fails_with_500(db: None, fields: dict, method: str) -> None:
    staff, _ = User.objects.get_or_create(username="staff", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    reply = client.generic(method, "/staff/export", urlencode(fields, errors=ODD),
                           content_type="application/x-www-form-urlencoded")  # fmt: skip
    _check(reply, "/staff/export", method)
    if getattr(reply, "streaming", False):
        b"".join(reply.streaming_content)  # the zip is built while it streams: errors too


def _done_battle(client: Client) -> str:
    """A new battle of this session whose answers are in: a follow-up or a vote reaches the
    database (a battle still waiting for its answers is refused before that)."""
    reply = client.post("/battles", {"prompt": "Hi"}, content_type="application/json")
    assert reply.status_code == 201, reply.content
    battle_id = reply.json()["id"]
    for response in Response.objects.filter(turn__battle_id=battle_id):
        claimed = services.response_claim(response_id=response.id)
        assert claimed is not None
        services.response_complete(
            response=claimed, text="fine", finish=Finish(1, 1, "stop"), ttft_ms=1, latency_ms=1
        )
    return battle_id


HOSTILE_EXAMPLES = [
    (b'{"prompt": "\\ud800", "choice": "\\ud800"}', True),
    (b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b', "choice": 1}', True),
    (b'{"prompt": ' + b"9" * 5000 + b', "choice": ' + b"9" * 5000 + b"}", True),
    (b'{"prompt": "a\\u0000b", "choice": "a\\u0000"}', True),
]


@FUZZ
@given(body=HOSTILE_JSON, suffix=st.sampled_from(["", "/turns", "/vote", "/regenerate"]))
@example(body=HOSTILE_EXAMPLES[0], suffix="")
@example(body=HOSTILE_EXAMPLES[0], suffix="/turns")
@example(body=HOSTILE_EXAMPLES[1], suffix="/vote")
@example(body=HOSTILE_EXAMPLES[2], suffix="/turns")
@example(body=HOSTILE_EXAMPLES[3], suffix="")
def test_hostile_json_gets_a_400_with_a_message_on_every_endpoint(
    visitor: tuple[Client, str, str], body: tuple[bytes, bool], suffix: str
) -> None:
    client, _, _ = visitor
    path = "/battles" if suffix == "" else f"/battles/{_done_battle(client)}{suffix}"
    reply = client.generic("POST", path, body[0], content_type="application/json")
    _check(reply, path, "POST")
    refuse, reads_body = body[1], suffix != "/regenerate"
    if reads_body and (refuse or suffix == "/vote"):
        assert reply.status_code == 400, (path, body[0][:80], reply.content[:300])
    elif reads_body:
        assert reply.status_code == 201, (path, body[0][:80], reply.content[:300])


@pytest.mark.parametrize("suffix", ["", "/turns"])
def test_a_prompt_with_nul_is_refused_with_a_reason(
    visitor: tuple[Client, str, str], suffix: str
) -> None:
    """PostgreSQL cannot store NUL in text: a 400 that says so, on SQLite too."""
    client, _, _ = visitor
    path = "/battles" if suffix == "" else f"/battles/{_done_battle(client)}{suffix}"
    for body in ({"prompt": "Say\x00hi"}, "prompt=Say%00hi"):
        if isinstance(body, dict):
            reply = client.post(path, body, content_type="application/json")
        else:
            reply = client.generic(
                "POST", path, body, content_type="application/x-www-form-urlencoded"
            )
        assert reply.status_code == 400, reply.content
        assert "NUL" in reply.json()["error"]


def test_nesting_is_refused_past_32_levels(db: None, cast: dict) -> None:
    def body(depth: int) -> bytes:  # the object itself is level 1
        return b'{"prompt": "Hi", "x": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"

    client = Client()
    assert client.generic("POST", "/battles", body(32), "application/json").status_code == 201
    reply = client.generic("POST", "/battles", body(33), "application/json")
    assert reply.status_code == 400
    assert reply.json()["error"] == "The request body is nested too deeply: at most 32 levels."


@FUZZ
@given(
    path=st.sampled_from(["/battles/{done}", "/battles/{done}/stream", "/battles/{id}/stream",
                          "/readyz", "/metrics", "/healthz", "/api/leaderboard",
                          "/api/leaderboard.csv", "/api/models/{id}", "/leaderboard"]),
    battle_id=RAW_QUERY, names=st.lists(st.sampled_from(
        ["last_event_id", "workers", "category", "style_control", "x", "%ff"]), max_size=3),
    values=st.lists(RAW_QUERY, min_size=3, max_size=3),
    header=st.one_of(st.none(), TEXT, RAW_QUERY),
)  # fmt: skip
@example(path="/metrics", battle_id="x", names=[], values=["", "", ""], header="\ud800")
@example(path="/readyz", battle_id="x", names=[], values=["", "", ""], header="\ud800")
def test_get_endpoints_take_any_bytes_in_ids_and_query_strings(
    visitor: tuple[Client, str, str],
    path: str,
    battle_id: str,
    names: list[str],
    values: list[str],
    header: str | None,
) -> None:
    client, done, _ = visitor
    full = path.format(done=done, id=battle_id or "x")
    full += "?" + "&".join(f"{name}={value}" for name, value in zip(names, values, strict=False))
    headers = {} if header is None else {"HTTP_LAST_EVENT_ID": header, "HTTP_AUTHORIZATION": header}
    with override_settings(ARENA_METRICS_TOKEN="fuzz-token"):  # the header is compared to it
        reply = client.get(full, **headers)
    _check(reply, full, "GET")
    if getattr(reply, "streaming", False) and reply.status_code == 200:
        async_to_sync(_read)(reply)


def test_the_fuzzed_session_still_works(visitor: tuple[Client, str, str]) -> None:
    """The fixture's battles are real: a sanity check that the fuzzing hits live code paths."""
    client, done, _ = visitor
    vote = client.post(f"/battles/{done}/vote", {"choice": "a"}, content_type="application/json")
    assert vote.status_code == 201, vote.content
    assert Battle.objects.count() == 2


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("POST", "/api/leaderboard", 405, "Use GET here, not POST."),
        ("DELETE", "/battles/x/stream", 405, "Use GET here, not DELETE."),
        ("POST", "/battles", 400, "could not be read"),
    ],
)
def test_django_refusals_on_the_api_are_json_too(
    db: None, method: str, path: str, status: int, message: str
) -> None:
    """Refusals that Django makes before our views run (a method `require_GET` refuses, a
    multipart body without a boundary) keep the API's contract: JSON with a message."""
    reply = Client().generic(method, path, b"--x\r\n", content_type="multipart/form-data")
    assert reply.status_code == status
    assert reply["Content-Type"] == "application/json"
    assert message in reply.json()["error"]
