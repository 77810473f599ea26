from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from leaderboard.models import VoterFlag
from leaderboard.pipeline.flags import voter_flag_review


@admin.register(VoterFlag)
class VoterFlagAdmin(admin.ModelAdmin):
    list_display = [
        "voter", "reasons", "n_votes", "excluded", "flagged_at", "reviewed_by", "reviewed_at",
    ]  # fmt: skip
    list_filter = ["excluded", "reviewed_at", "flagged_at"]
    search_fields = ["voter"]
    readonly_fields = [
        "voter", "reasons", "statistics", "n_votes", "excluded", "flagged_at", "updated_at",
        "reviewed_by", "reviewed_at",
    ]  # fmt: skip
    actions = ["re_include_voters", "exclude_voters"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Flags come from the detector; staff decide on them with the actions.
        return False

    def _review(self, request: HttpRequest, queryset: QuerySet[VoterFlag], excluded: bool) -> None:
        for flag in queryset:
            voter_flag_review(flag=flag, excluded=excluded, user=request.user)
        verb = "excluded" if excluded else "re-included"
        self.message_user(
            request,
            f"{queryset.count()} voter(s) {verb}; the next leaderboard refresh applies it.",
            messages.SUCCESS,
        )

    @admin.action(description="Re-include: count the selected voters' votes again")
    def re_include_voters(self, request: HttpRequest, queryset: QuerySet[VoterFlag]) -> None:
        self._review(request, queryset, excluded=False)

    @admin.action(description="Exclude: stop counting the selected voters' votes")
    def exclude_voters(self, request: HttpRequest, queryset: QuerySet[VoterFlag]) -> None:
        self._review(request, queryset, excluded=True)
