"""The facts of a battle: language tags, markdown counts, code, lengths (arena/facts.py)."""

from __future__ import annotations

import pytest

from arena import facts


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        # Short English prompts without the old stop words ("the", "is", ...) are English.
        ("Write a haiku about rivers.", "en"),
        ("List five prime numbers greater than 100.", "en"),
        ("Explain quantum computing in simple terms", "en"),
        ("Wie spät ist es in Tokio?", "de"),
        ("Schreib mir ein Gedicht über den Herbst.", "de"),
        ("Explique-moi la photosynthèse.", "fr"),
        ("Quelle est la capitale de l'Australie ?", "fr"),
        ("¿Cuál es la capital de Australia?", "es"),
        ("Привет, как дела?", "ru"),
        ("你好\uff0c今天天气怎么样", "zh"),
        ("こんにちは、元気ですか", "ja"),
    ],
)
def test_language_guess_tags_short_prompts_with_iso_639_1(text: str, tag: str) -> None:
    assert facts.language_guess(text) == tag


@pytest.mark.parametrize("text", ["", "   ", "hola", "ok", "hi", "Danke", "123 + 456"])
def test_a_single_word_or_no_words_is_undetermined(text: str) -> None:
    assert facts.language_guess(text) == "und"


def test_markdown_is_counted_outside_code_blocks_as_lmarena_counts_it() -> None:
    answer = (
        "# Title\n\n## Sub\n1. one\n2. two\n* three\n__b__ and **c**\n```\n# no\n- no\n**no**\n```"
    )
    assert facts.markdown_counts(answer) == {"headers": 2, "lists": 3, "bold": 2}


def test_battle_facts_use_token_counts_when_known_and_words_otherwise() -> None:
    conv_a = [
        {"role": "user", "content": "Write a haiku about rivers."},
        {"role": "assistant", "content": "Water **finds** its way"},
        {"role": "user", "content": "Another, with code"},
        {"role": "assistant", "content": "```py\nflow()\n```"},
    ]
    conv_b = [conv_a[0], {"role": "assistant", "content": "- a\n- b"}, conv_a[2],
              {"role": "assistant", "content": "no"}]  # fmt: skip
    found = facts.battle_facts(conv_a, conv_b, tokens_a=12)
    assert found.as_fields() == {
        "language": "en", "turns": 2, "prompt_chars": 27 + 18, "has_code": True,
        "tokens_a": 12, "tokens_b": 5, "style_a": {"headers": 0, "lists": 0, "bold": 1},
        "style_b": {"headers": 0, "lists": 2, "bold": 0},
    }  # fmt: skip
    assert facts.style_row(found.tokens_b, found.style_b) == (5.0, 0.0, 2.0, 0.0)


def test_recompute_facts_updates_old_votes_and_keeps_what_a_log_said(db: None) -> None:
    import io

    from django.core.management import call_command
    from django.utils import timezone

    from arena.management.commands.recompute_facts import votes_facts_recompute
    from arena.models import ArenaModel, Battle, Vote

    a, b = (ArenaModel.objects.create(name=n, display_name=n, backend="local") for n in "ab")
    now = timezone.now()

    def vote(prompt: str, answer: str, **fields: object) -> Vote:
        conv = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        return Vote.objects.create(
            battle=Battle.objects.create(model_a=a, model_b=b, visitor_id="v"), model_a=a,
            model_b=b, outcome="model_a", visitor_id="v", conversation_a=conv,
            conversation_b=conv, battle_started_at=now, tokens_a=7, turns=1, prompt_chars=27,
            **fields,
        )  # fmt: skip

    # As the old guesser stored them: a short English prompt "und", a header in code counted.
    live = vote("Write a haiku about rivers.", "```\n# x\n```", language="und",
                style_a={"headers": 1, "lists": 0, "bold": 0})  # fmt: skip
    logged = vote("Write a haiku about rivers.", "ok", language="fr", source="import:log")
    guessed = vote("List five prime numbers greater than 100.", "ok", language="und",
                   source="import:log")  # fmt: skip
    without_text = Vote.objects.create(
        battle=Battle.objects.create(model_a=a, model_b=b, visitor_id="v"), model_a=a, model_b=b,
        outcome="tie", visitor_id="v", conversation_a=[], conversation_b=[],
        battle_started_at=now, language="und", turns=1, prompt_chars=0,
    )  # fmt: skip
    assert votes_facts_recompute(dry_run=True).changed == 2
    assert Vote.objects.get(id=live.id).language == "und"
    out = io.StringIO()
    call_command("recompute_facts", stdout=out)
    assert "4 votes examined, changed 2" in out.getvalue()
    assert "language und -> en: 2" in out.getvalue()
    live.refresh_from_db()
    assert (live.language, live.style_a["headers"], live.has_code, live.tokens_a) == (
        "en",
        0,
        True,
        7,
    )
    assert Vote.objects.get(id=logged.id).language == "fr"
    assert Vote.objects.get(id=guessed.id).language == "en"
    assert Vote.objects.get(id=without_text.id).language == "und"
    assert votes_facts_recompute().changed == 0  # idempotent
