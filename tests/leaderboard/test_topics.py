"""Topics in snapshots, the explorer page, /api/rank, prompt vectors (local and remote)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from celery.signals import before_task_publish
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.utils import timezone
from scipy.stats import kendalltau

from arena.models import ArenaModel, Battle, Vote
from leaderboard.engine.topic_simulation import make_design, topic_strengths
from leaderboard.models import LeaderboardSnapshot, PromptSpace, PromptVector
from leaderboard.pages import selectors
from leaderboard.pipeline import embeddings
from leaderboard.pipeline.snapshots import leaderboard_snapshot_create
from leaderboard.tasks import embed_prompt
from tests.factories import vote_build, votes_store


@pytest.fixture(autouse=True)
def fresh(settings: Any) -> Iterator[None]:
    settings.ARENA_LEADERBOARD_ROUNDS = 20
    settings.ARENA_LEADERBOARD_STYLE_CONTROL = False
    settings.ARENA_RANK_MIN_EFFECTIVE = 20
    selectors.payload_cache_clear()
    embeddings._spaces.clear()
    yield
    selectors.payload_cache_clear()
    embeddings._spaces.clear()


def seed_votes(per_topic: int = 120, *, seed: int = 5) -> dict[str, Any]:
    """Votes on prompts of three generated topics, outcomes from each topic's strengths; a
    quarter of topic 0's battles flagged by moderation, their prompts returned as ``flagged``
    (the votes stay valid: the flag is on the battle). The flagged prompts carry no marker
    words: shared words would make them a topic of their own, which is right for the product
    but not what these tests are about."""
    rng = np.random.default_rng(seed)
    design = make_design(rng, per_topic=per_topic)
    models = [
        ArenaModel.objects.create(name=n, display_name=n, backend="local") for n in design.names
    ]
    s = topic_strengths()
    now = timezone.now()
    made = []
    flagged_texts: set[str] = set()
    for k, prompt in enumerate(design.prompts):
        t, i, j = int(design.topic[k]), int(design.model_a[k]), int(design.model_b[k])
        win = rng.random() < 1 / (1 + np.exp(s[t, j] - s[t, i]))
        flagged = k < per_topic and k % 4 == 3  # a quarter of topic 0
        text = prompt
        if flagged:
            flagged_texts.add(prompt)
        made.append(
            vote_build(
                models[i],
                models[j],
                "model_a" if win else "model_b",
                visitor_id=f"v{k % 50}",
                when=now - dt.timedelta(seconds=k),
                battle={"moderation": [{"kind": "answer", "turn": 0}] if flagged else []},
                conversation_a=[
                    {"role": "user", "content": text},
                    {"role": "assistant", "content": "x"},
                ],
                conversation_b=[
                    {"role": "user", "content": text},
                    {"role": "assistant", "content": "y"},
                ],
                language="en",
                prompt_chars=len(text),
            )
        )
    votes_store(made)
    return {"design": design, "models": models, "flagged": flagged_texts}


def order_agreement(rows: list[dict[str, Any]], topic: int) -> float:
    """Kendall tau between the rows' ratings and topic ``topic``'s true strengths."""
    truth = topic_strengths()[topic]
    got = [(truth[int(r["model"].split("-")[1])], r["rating"]) for r in rows]
    return float(kendalltau(*zip(*got, strict=True)).statistic)


@pytest.mark.django_db
def test_topics_become_categories_with_terms_and_unflagged_examples(client: Client) -> None:
    data = seed_votes()
    snapshot = leaderboard_snapshot_create()
    assert snapshot is not None
    info = snapshot.topics
    assert info["method"] == "local" and info["version"].startswith("local:")
    assert info["k"] == 3 and "silhouette" in info["criterion"]
    assert info["dimensions"] == 16 and info["bandwidth"] == 0.07
    assert sorted(t["votes"] for t in info["topics"]) == [120, 120, 120]
    vocab = [set(v) for v in data["design"].vocabularies]
    for topic in info["topics"]:
        assert topic["category"] and topic["name"] in snapshot.topic_results
        words = {w for term in topic["terms"] for w in term.split()}
        assert any(words <= v for v in vocab), topic["terms"]
        assert len(topic["examples"]) == 3
        assert not set(topic["examples"]) & data["flagged"]
        rows = snapshot.topic_results[topic["name"]]["rows"]
        assert rows and all(r["rank"] is not None for r in rows)
    assert PromptSpace.objects.filter(snapshot=snapshot, version=info["version"]).exists()
    # Each topic's ratings follow the strengths that generated its votes, not the others'.
    for topic in info["topics"]:
        words = {w for term in topic["terms"] for w in term.split()}
        truth = next(t for t, v in enumerate(vocab) if words <= v)
        rows = snapshot.topic_results[topic["name"]]["rows"]
        assert order_agreement(rows, truth) > 0.6, (topic, rows)
    # In the API and on the leaderboard page, as categories with a label.
    reply = client.get("/api/leaderboard", {"category": "topic:0"})
    assert reply.status_code == 200 and reply.json()["rows"]
    page = client.get("/leaderboard", {"category": "topic:1"}).content.decode()
    assert 'value="topic:1" selected>Topic 1: ' in page and 'href="/leaderboard/topics"' in page


@pytest.mark.django_db
def test_a_flagged_prompt_is_never_an_example_even_when_nearest_the_centroid() -> None:
    seed_votes(per_topic=40)
    # Make the flagged vote's prompt the most typical of its topic: a copy of an example.
    snapshot = leaderboard_snapshot_create()
    assert snapshot is not None
    example = snapshot.topics["topics"][0]["examples"][0]
    flagged = Vote.objects.filter(battle__moderation__0__kind="answer").first()
    assert flagged is not None
    flagged.conversation_a = [{"role": "user", "content": example + " " + example}]
    flagged.save()
    again = leaderboard_snapshot_create(force=True)
    assert again is not None
    shown = [e for t in again.topics["topics"] for e in t["examples"]]
    assert example + " " + example not in shown


@pytest.mark.django_db
def test_rank_api_ranks_for_a_prompt_with_its_effective_size(client: Client) -> None:
    data = seed_votes(per_topic=400)
    leaderboard_snapshot_create()
    design = data["design"]
    for t in range(3):
        prompt = " ".join(design.vocabularies[t][:8])
        reply = client.get("/api/rank", {"prompt": prompt})
        assert reply.status_code == 200, reply.content
        body = reply.json()
        assert body["status"] == "ok" and body["effective_battles"] >= 20
        assert order_agreement(body["rows"], t) > 0.6, (t, body)
        assert all(r["lower"] <= r["rating"] <= r["upper"] for r in body["rows"])


@pytest.mark.django_db
def test_rank_api_refuses_to_rank_on_too_few_similar_battles(client: Client, settings: Any) -> None:
    seed_votes(per_topic=40)
    leaderboard_snapshot_create()
    settings.ARENA_RANK_MIN_EFFECTIVE = 10_000
    body = client.get("/api/rank", {"prompt": "anything at all"}).json()
    assert body["status"] == "not enough similar battles" and body["rows"] == []
    assert 0 <= body["effective_battles"] < 10_000
    page = client.get("/leaderboard/topics", {"prompt": "anything at all"}).content.decode()
    assert 'id="not-enough"' in page


@pytest.mark.django_db
def test_rank_api_answers_bad_prompts_with_400_and_no_snapshot_with_404(
    client: Client, settings: Any
) -> None:
    assert client.get("/api/rank", {"prompt": "hello"}).status_code == 404
    seed_votes(per_topic=40)
    leaderboard_snapshot_create()
    assert client.get("/api/rank").status_code == 400
    assert client.post("/api/rank", {"prompt": "hello"}).status_code == 405
    assert client.get("/api/rank", {"prompt": "   "}).status_code == 400
    settings.ARENA_RANK_MAX_PROMPT_CHARS = 100
    reply = client.get("/api/rank", {"prompt": "x" * 101})
    assert reply.status_code == 400 and "at most 100" in reply.json()["error"]
    assert client.get("/api/rank", {"prompt": "a\x00b"}).status_code == 400
    assert client.get("/leaderboard/topics", {"prompt": "x" * 101}).status_code == 400


@pytest.mark.django_db
def test_explorer_page_shows_topics_and_ranks_per_topic(client: Client) -> None:
    data = seed_votes()
    leaderboard_snapshot_create()
    page = client.get("/leaderboard/topics").content.decode()
    assert page.count('<a href="/leaderboard?category=topic%3A') == 3
    assert 'id="topic-ranks"' in page
    for name in data["design"].names:
        assert f"<td>{name}</td>" in page
    assert not any(text in page for text in data["flagged"])
    prompt = " ".join(data["design"].vocabularies[2][:8])
    page = client.get("/leaderboard/topics", {"prompt": prompt}).content.decode()
    assert 'id="ranking"' in page and "effective battles" in page


@pytest.mark.django_db
def test_explorer_page_without_votes_says_so(client: Client) -> None:
    assert "No leaderboard yet" in client.get("/leaderboard/topics").content.decode()


@pytest.mark.django_db
def test_embed_task_and_command_store_vectors_of_the_latest_fit() -> None:
    seed_votes(per_topic=40)
    vote = Vote.objects.order_by("id").first()
    assert vote is not None
    # Local method before any snapshot: no fit to transform with yet.
    assert embed_prompt(vote.id) is False
    snapshot = leaderboard_snapshot_create()
    assert snapshot is not None
    assert embed_prompt(vote.id) is True
    stored = PromptVector.objects.get(vote=vote)
    assert stored.version == snapshot.topics["version"]
    space = embeddings.prompt_space_load(snapshot)
    assert space is not None
    first = np.frombuffer(bytes(stored.vector), dtype="<f4")
    np.testing.assert_allclose(first, space.vectors[0], atol=1e-6)
    call_command("embed_prompts", "--all")
    assert PromptVector.objects.count() == Vote.objects.count()
    assert PromptVector.objects.values("version").distinct().count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_new_vote_enqueues_its_embedding_by_task_name_on_commit() -> None:
    seed_votes(per_topic=10)
    published: list[tuple[str, Any]] = []

    def seen(sender: str, headers: dict[str, Any], **kwargs: Any) -> None:
        published.append((sender, headers.get("argsrepr")))

    # Celery's own signal, sent as the message goes to the real broker (a worker may take it).
    before_task_publish.connect(seen)
    try:
        vote = Vote.objects.first()
        assert vote is not None
        with transaction.atomic():
            battle = Battle.objects.create(
                model_a=vote.model_a, model_b=vote.model_b, visitor_id="w"
            )
            fresh = Vote.objects.create(
                battle=battle, model_a=vote.model_a, model_b=vote.model_b, outcome="tie",
                visitor_id="w", conversation_a=[], conversation_b=[], turns=1, prompt_chars=0,
                battle_started_at=timezone.now(),
            )  # fmt: skip
            assert published == []  # not before the commit
    finally:
        before_task_publish.disconnect(seen)
    assert ("leaderboard.tasks.embed_prompt", f"[{fresh.id}]") in published


class EmbeddingsStandIn:
    """A loopback server speaking OpenAI's POST /v1/embeddings: a hashed bag of words in 32
    dimensions, so prompts sharing words are similar."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.requests.append({"path": self.path, "body": body,
                                          "auth": self.headers.get("Authorization")})  # fmt: skip
                if self.path != "/v1/embeddings":
                    self.send_response(404)
                    self.end_headers()
                    return
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                data = [{"object": "embedding", "index": i, "embedding": stand_in.embed(text)}
                        for i, text in enumerate(inputs)]  # fmt: skip
                # Out of order on purpose: clients must sort by index.
                reply = json.dumps({
                    "object": "list", "data": data[::-1], "model": body.get("model"),
                    "usage": {"prompt_tokens": 1, "total_tokens": 1},
                }).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @staticmethod
    def embed(text: str) -> list[float]:
        v = np.zeros(32)
        for word in text.split():
            v[int(hashlib.sha256(word.encode()).hexdigest(), 16) % 32] += 1.0
        return v.tolist()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_in(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddingsStandIn]:
    server = EmbeddingsStandIn()
    monkeypatch.setenv("TEST_EMBEDDINGS_KEY", "sk-test")
    settings.ARENA_EMBEDDINGS_URL = server.url
    settings.ARENA_EMBEDDINGS_MODEL = "stand-in-embed"
    settings.ARENA_EMBEDDINGS_API_KEY_ENV = "TEST_EMBEDDINGS_KEY"
    yield server
    server.close()


@pytest.mark.django_db
def test_remote_embeddings_feed_vectors_topics_and_the_rank(
    stand_in: EmbeddingsStandIn, client: Client, settings: Any
) -> None:
    # The stand-in's hashed words make looser topics than the local encoder: smaller ones count.
    settings.ARENA_LEADERBOARD_LANGUAGE_MIN_VOTES = 5
    settings.ARENA_RANK_MIN_EFFECTIVE = 5
    data = seed_votes(per_topic=60)
    n, version = embeddings.prompt_vectors_compute(votes=Vote.objects.all())
    assert (n, version) == (180, "remote:stand-in-embed")
    first = stand_in.requests[0]
    assert first["auth"] == "Bearer sk-test" and first["body"]["model"] == "stand-in-embed"
    assert first["body"]["encoding_format"] == "float"
    # Only missing vectors are fetched again.
    assert embeddings.prompt_vectors_compute(votes=Vote.objects.all())[0] == 0
    snapshot = leaderboard_snapshot_create()
    assert snapshot is not None
    assert snapshot.topics["method"] == "remote" and snapshot.params["embeddings"] == "remote"
    assert snapshot.topics["n_prompts"] == 180 and snapshot.topic_results
    space = PromptSpace.objects.get(snapshot=snapshot)
    assert space.method == "remote" and bytes(space.encoder) == b""
    prompt = " ".join(data["design"].vocabularies[1][:10])
    body = client.get("/api/rank", {"prompt": prompt}).json()
    assert body["status"] == "ok" and body["method"] == "remote", body
    assert stand_in.requests[-1]["body"]["input"] == [prompt]


@pytest.mark.django_db
def test_an_unreachable_embeddings_endpoint_is_a_clear_error(settings: Any) -> None:
    settings.ARENA_EMBEDDINGS_URL = "http://127.0.0.1:9"
    settings.ARENA_EMBEDDINGS_TIMEOUT_MS = 500
    seed_votes(per_topic=5)
    with pytest.raises(embeddings.EmbeddingsError, match="embeddings endpoint"):
        embeddings.prompt_vectors_compute(votes=Vote.objects.all())


@pytest.mark.django_db
def test_snapshots_without_prompts_have_no_topics(client: Client) -> None:
    models = [ArenaModel.objects.create(name=n, backend="local") for n in ("p", "q")]
    battle = Battle.objects.create(model_a=models[0], model_b=models[1], visitor_id="v")
    Vote.objects.create(
        battle=battle, model_a=models[0], model_b=models[1], outcome="tie", visitor_id="v",
        conversation_a=[], conversation_b=[], turns=1, prompt_chars=0,
        battle_started_at=timezone.now(),
    )  # fmt: skip
    snapshot = leaderboard_snapshot_create()
    assert snapshot is not None and snapshot.topic_results == {}
    assert not PromptSpace.objects.exists()
    assert client.get("/api/rank", {"prompt": "hi"}).status_code == 404
    assert 'id="no-topics"' in client.get("/leaderboard/topics").content.decode()
    assert LeaderboardSnapshot.objects.count() == 1


@pytest.mark.django_db
def test_prompts_without_words_give_a_note_not_a_failed_snapshot(client: Client) -> None:
    models = [ArenaModel.objects.create(name=n, backend="local") for n in ("p", "q")]
    for k, text in enumerate(["?", "!!", "...", "?!", "--", "??"] * 3):
        battle = Battle.objects.create(model_a=models[0], model_b=models[1], visitor_id="v")
        Vote.objects.create(
            battle=battle, model_a=models[0], model_b=models[1],
            outcome=("model_a", "model_b")[k % 2], visitor_id="v",
            conversation_a=[{"role": "user", "content": text}], conversation_b=[], turns=1,
            prompt_chars=len(text), battle_started_at=timezone.now(),
        )  # fmt: skip
    snapshot = leaderboard_snapshot_create()
    assert snapshot is not None and snapshot.results["overall"]["rows"]
    assert snapshot.topic_results == {} and "no topics" in snapshot.topics["note"]
    assert "no topics" in client.get("/leaderboard/topics").content.decode()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_stores_the_vector_of_a_new_vote(worker: Any) -> None:
    data = seed_votes(per_topic=40)
    snapshot = leaderboard_snapshot_create()
    assert snapshot is not None
    model_a, model_b = data["models"][:2]
    prompt = " ".join(data["design"].vocabularies[0][:6])
    with transaction.atomic():
        battle = Battle.objects.create(model_a=model_a, model_b=model_b, visitor_id="w")
        vote = Vote.objects.create(
            battle=battle, model_a=model_a, model_b=model_b, outcome="tie", visitor_id="w",
            conversation_a=[{"role": "user", "content": prompt}], conversation_b=[], turns=1,
            prompt_chars=len(prompt), battle_started_at=timezone.now(),
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while not PromptVector.objects.filter(vote=vote).exists():
        assert time.monotonic() < deadline, "the worker stored no vector within 60 s"
        time.sleep(0.2)
    stored = PromptVector.objects.get(vote=vote)
    assert stored.version == snapshot.topics["version"]
    space = embeddings.prompt_space_load(snapshot)
    assert space is not None and space.encoder is not None
    expected = space.encoder.transform([prompt])[0]
    np.testing.assert_allclose(np.frombuffer(bytes(stored.vector), "<f4"), expected, atol=1e-6)


@pytest.mark.django_db
def test_hostile_prompts_never_answer_500(client: Client) -> None:
    seed_votes(per_topic=40)
    leaderboard_snapshot_create()
    odd = [
        "\ud800 lone surrogate", "%00", "\x01\x02\x7f", "😀" * 50, "a" * 4000, "<script>x</script>",
        " ".join(["word"] * 1500), "\u202e reversed", "ß" * 10,
    ]  # fmt: skip
    for prompt in odd:
        query = "prompt=" + quote(prompt, safe="", errors="surrogatepass")
        for path in ("/api/rank", "/leaderboard/topics"):
            reply = client.get(f"{path}?{query}")
            assert reply.status_code in (200, 400), (path, prompt[:20], reply.status_code)
    page = client.get("/leaderboard/topics", {"prompt": "<script>x</script>"}).content.decode()
    assert "<script>x</script>" not in page
