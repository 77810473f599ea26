# The prompt key of the existing votes is filled from their stored conversations, with the same
# function that vote_record and the importer use (arena.prompts.prompt_hash).

from django.db import migrations, models


def fill_prompt_keys(apps, schema_editor):
    from arena.prompts import prompt_hash

    Vote = apps.get_model("arena", "Vote")
    fields = ("id", "battle_id", "external_id", "conversation_a", "conversation_b")
    batch = []
    for row in Vote.objects.filter(prompt_key="").values(*fields).iterator(chunk_size=2000):
        batch.append(Vote(id=row["id"], prompt_key=prompt_hash(row)))
        if len(batch) >= 2000:
            Vote.objects.bulk_update(batch, ["prompt_key"])
            batch = []
    if batch:
        Vote.objects.bulk_update(batch, ["prompt_key"])


class Migration(migrations.Migration):
    dependencies = [
        ("arena", "0003_battle_moderation"),
    ]

    operations = [
        migrations.AddField(
            model_name="vote",
            name="prompt_key",
            field=models.CharField(blank=True, db_index=True, max_length=32),
        ),
        migrations.RunPython(fill_prompt_keys, migrations.RunPython.noop),
    ]
