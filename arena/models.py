"""The battle domain: the model registry entry, battles, turns, responses and votes.

A Battle pits two ArenaModels against each other, left ("a") and right ("b"). Each Turn is one
visitor prompt; each Turn has one current Response per side (a regenerate supersedes them with
new ones). A Vote, at most one per battle, is the record that the leaderboard and the datasets
are built from, so it keeps a full copy of what was judged.
"""

from __future__ import annotations

import secrets

from django.db import models
from django.utils import timezone


def new_battle_id() -> str:
    # 128 random bits, URL-safe: the id is the only thing standing between a stranger and a battle.
    return secrets.token_urlsafe(16)


class Backend(models.TextChoices):
    LOCAL = "local", "Local Hugging Face model (in the worker)"
    OPENAI = "openai", "OpenAI-compatible HTTP API (vLLM, ...)"


class ArenaModel(models.Model):
    """One entry of the registry (`models.toml`); a name that does not clash with Django's Model."""

    name = models.SlugField(max_length=100, unique=True)
    display_name = models.CharField(max_length=200)
    organization = models.CharField(max_length=200, blank=True)
    license = models.CharField(max_length=100, blank=True)
    description = models.TextField(blank=True)
    backend = models.CharField(max_length=20, choices=Backend.choices)
    options = models.JSONField(default=dict, blank=True)
    sampling_weight = models.FloatField(default=1.0)
    max_concurrency = models.PositiveIntegerField(default=4)
    # Takes images in the prompt (`vision = true` in models.toml): only such models are drawn for
    # a battle whose first turn carries an image.
    vision = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    # False once the entry disappeared from models.toml: kept for history, never sampled.
    in_registry = models.BooleanField(default=True)
    # Set by the workers: a model that fails ARENA_UNHEALTHY_AFTER times in a row leaves the
    # sampling pool until a health probe succeeds (see workers/health.py).
    healthy = models.BooleanField(default=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    health_error = models.TextField(blank=True)
    health_changed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(sampling_weight__gte=0), name="sampling_weight_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def queue(self) -> str:
        """The Celery queue that this model's generations are routed to."""
        return f"model.{self.name}"


class Side(models.TextChoices):
    A = "a", "Model A"
    B = "b", "Model B"


class BattleMode(models.TextChoices):
    BLIND = "blind", "Blind battle: names revealed after the vote"
    NAMED = "named", "Side by side with models the visitor chose: names shown from the start"
    CHAT = "chat", "Direct chat with one model (side A only; model_b repeats model_a)"


class Battle(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_battle_id, editable=False)
    # Only a blind battle's vote is anonymous (Vote.anony) and may count on the leaderboard.
    # Never filtered on alone (a battle is read by its id, then its mode is checked): no index.
    mode = models.CharField(max_length=10, choices=BattleMode.choices, default=BattleMode.BLIND)
    # No index on the models' foreign keys: no query looks battles up by model (see Meta).
    model_a = models.ForeignKey(
        ArenaModel, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    model_b = models.ForeignKey(
        ArenaModel, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # Pseudonymous: a keyed hash of the visitor's session token, never the raw session key.
    # Compared after the battle is read by id, never looked up: no index.
    visitor_id = models.CharField(max_length=64)
    ip_hash = models.CharField(max_length=64, blank=True)
    # A default, not auto_now_add: imported battles keep their original time.
    created_at = models.DateTimeField(default=timezone.now)
    # What the moderation checker flagged in this battle (see arena/moderation.py): a list of
    # {"kind": "prompt" | "answer", "turn", "side", "response_id", "checker", "categories", ...}.
    # A flagged answer makes the vote invalid; a flagged follow-up prompt was refused.
    moderation = models.JSONField(default=list, blank=True)
    # Made up by `manage.py seed_votes` to fill a demo, never played by a person.
    simulated = models.BooleanField(default=False)
    # The read-only page of the finished battle (arena/sharing.py): set by the visitor after the
    # vote, at least 128 random bits; staff revoke it (the admin's action), and it stays dead.
    # NULL, not "", for no link: the partial unique index (Meta) holds only the shared ones.
    share_id = models.CharField(max_length=64, null=True, blank=True, editable=False)  # noqa: DJ001
    share_revoked = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        # Every index is named and costs each insert (an import writes millions): only those a
        # query uses. Explicit indexes have no `varchar_pattern_ops` twin on PostgreSQL (no
        # query here uses LIKE). Partial where the query asks for the rare rows only.
        indexes = [
            models.Index(fields=["created_at"], name="battle_created_at"),
            # `Battle.objects.filter(simulated=True).delete()` (workers/simulated_votes.py).
            models.Index(fields=["simulated"], condition=models.Q(simulated=True),
                         name="battle_simulated"),
        ]  # fmt: skip
        constraints = [
            # Only shared battles have a link: the others (NULL) take no room in the index.
            models.UniqueConstraint(fields=["share_id"], condition=models.Q(share_id__isnull=False),
                                    name="battle_unique_share_id"),
        ]  # fmt: skip

    def __str__(self) -> str:
        return self.id

    @property
    def anony(self) -> bool:
        return self.mode == BattleMode.BLIND

    def model_for(self, side: str) -> ArenaModel:
        return self.model_a if side == Side.A else self.model_b


class PromptImage(models.Model):
    """An image a visitor attached to a prompt, as stored after `arena.images.image_normalise`:
    re-encoded without metadata, named by the SHA-256 of the stored bytes (one row per
    distinct image). In the database, so that every worker host can read it."""

    sha256 = models.CharField(max_length=64, unique=True)
    mime = models.CharField(max_length=20)
    data = models.BinaryField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"image {self.sha256[:12]} ({self.width}x{self.height} {self.mime})"


class Turn(models.Model):
    battle = models.ForeignKey(Battle, on_delete=models.CASCADE, related_name="turns")
    index = models.PositiveIntegerField()
    prompt = models.TextField()
    # The first turn of a vision battle carries an image; follow-ups do not.
    image = models.ForeignKey(
        PromptImage, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["battle", "index"]
        constraints = [
            models.UniqueConstraint(fields=["battle", "index"], name="turn_unique_index"),
        ]

    def __str__(self) -> str:
        return f"{self.battle_id} turn {self.index}"


class ResponseStatus(models.TextChoices):
    QUEUED = "queued"
    STREAMING = "streaming"
    DONE = "done"
    FAILED = "failed"


class Response(models.Model):
    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="responses")
    side = models.CharField(max_length=1, choices=Side.choices)
    model = models.ForeignKey(ArenaModel, on_delete=models.PROTECT, related_name="responses")
    # A regenerate supersedes the current pair with a new pair; history stays.
    superseded = models.BooleanField(default=False)
    status = models.CharField(
        max_length=10, choices=ResponseStatus.choices, default=ResponseStatus.QUEUED
    )
    text = models.TextField(blank=True)
    error = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["turn", "side", "id"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"response {self.id} ({self.side}, {self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in (ResponseStatus.DONE, ResponseStatus.FAILED)


class Outcome(models.TextChoices):
    MODEL_A = "model_a"
    MODEL_B = "model_b"
    TIE = "tie"
    BOTH_BAD = "both_bad"


# What a visitor posts -> what is stored.
CHOICES: dict[str, Outcome] = {
    "a": Outcome.MODEL_A,
    "b": Outcome.MODEL_B,
    "tie": Outcome.TIE,
    "both_bad": Outcome.BOTH_BAD,
}


class Vote(models.Model):
    battle = models.OneToOneField(Battle, on_delete=models.PROTECT, related_name="vote")
    model_a = models.ForeignKey(
        ArenaModel, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    model_b = models.ForeignKey(
        ArenaModel, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    visitor_id = models.CharField(max_length=64)
    # The full conversations as judged: [{"role": ..., "content": ...}, ...] per side.
    conversation_a = models.JSONField()
    conversation_b = models.JSONField()
    is_valid = models.BooleanField(default=True)
    invalid_reason = models.CharField(max_length=200, blank=True)
    # Facts that categories and style control need.
    language = models.CharField(max_length=16, blank=True)
    turns = models.PositiveIntegerField()
    prompt_chars = models.PositiveIntegerField()
    has_code = models.BooleanField(default=False)
    tokens_a = models.PositiveIntegerField(default=0)
    tokens_b = models.PositiveIntegerField(default=0)
    style_a = models.JSONField(default=dict)
    style_b = models.JSONField(default=dict)
    battle_started_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    # Where the vote came from: "arena" for votes cast here, "import:<label>" for imported logs,
    # whose record id (e.g. a FastChat question_id) is kept to make re-imports idempotent.
    source = models.CharField(max_length=100, default="arena")
    external_id = models.CharField(max_length=200, blank=True)
    # False where the names were visible when the vote was cast (imported non-anonymous battles).
    anony = models.BooleanField(default=True)
    # A hash of the normalised first prompt (arena.prompts.prompt_hash), so that
    # the leaderboard can count how often a prompt recurs in SQL and down-sample the most
    # repeated ones (leaderboard/engine/dedup.py). Empty: unknown, never down-sampled.
    prompt_key = models.CharField(max_length=32, blank=True)
    # Made up by `manage.py seed_votes` (a demo's simulated voter, not a person): counted by the
    # leaderboard, which says how many it includes, and left out of exports unless asked for.
    simulated = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        # As Battle's: named, no LIKE twins, only what a query uses. Not indexed: the models'
        # foreign keys (no query looks votes up by model: the fit reads them all), `source`
        # (a source's votes are read whole, or through the unique (source, external_id) below),
        # `is_valid=True` (nearly every vote).
        indexes = [
            models.Index(fields=["created_at"], name="vote_created_at"),
            # The excluded voters' votes (`visitor_id__in=...`), a voter's votes.
            models.Index(fields=["visitor_id"], name="vote_visitor_id"),
            # The down-sampling of repeated prompts (leaderboard/pipeline/battles.py).
            models.Index(fields=["prompt_key"], name="vote_prompt_key"),
            # The excluded votes by reason (leaderboard/pipeline/snapshots.py).
            models.Index(fields=["invalid_reason"], condition=models.Q(is_valid=False),
                         name="vote_invalid"),
            models.Index(fields=["simulated"], condition=models.Q(simulated=True),
                         name="vote_simulated"),
        ]  # fmt: skip
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"],
                condition=~models.Q(external_id=""),
                name="vote_unique_external_id",
            ),
        ]

    def __str__(self) -> str:
        return f"vote on {self.battle_id}: {self.outcome}"


class Feedback(models.TextChoices):
    UP = "up", "Good answer"
    DOWN = "down", "Bad answer"
    FLAG = "flag", "Harmful or inappropriate"


class AnswerFeedback(models.Model):
    """A visitor's label on one answer of a direct chat: one per answer, the last one wins."""

    response = models.OneToOneField(Response, on_delete=models.CASCADE, related_name="feedback")
    label = models.CharField(max_length=8, choices=Feedback.choices)
    visitor_id = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.label} on response {self.response_id}"


class SamplingPolicy(models.TextChoices):
    WEIGHTED = "weighted", "Weighted by each model's sampling weight"
    ADAPTIVE = "adaptive", "Adaptive: more battles for the models with the fewest (counts only)"


class SamplingPlan(models.Model):
    """The adaptive policy's pair probabilities, precomputed from the battle counts so that a battle
    request only draws (see arena/sampling/plan.py)."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # The pool the plan was made for (model names), in the order of the matrix rows.
    pool = models.JSONField()
    # (n, n) ordered-pair probabilities, zero diagonal, summing to 1.
    probabilities = models.JSONField()
    # Expected share of battles each model takes part in (sums to 2).
    shares = models.JSONField()
    n_votes = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"sampling plan {self.id} ({len(self.pool)} models)"
