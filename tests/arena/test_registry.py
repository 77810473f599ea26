from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from arena.models import ArenaModel
from arena.registry import RegistryError, registry_parse, registry_sync

GOOD = """
[[models]]
name = "alpha"
display_name = "Alpha 7B"
organization = "Org A"
license = "MIT"
backend = "local"
sampling_weight = 2
max_concurrency = 3
system_prompt = "Be brief."
[models.options]
path = "models/alpha"
[models.sampling]
temperature = 0.5
stop = ["###"]

[[models]]
name = "beta"
display_name = "Beta"
backend = "openai"
enabled = false
[models.options]
base_url = "http://gpu1:8001/v1"
"""


def test_parse_reads_every_field(tmp_path: Path) -> None:
    alpha, beta = registry_parse(GOOD, base_dir=tmp_path)
    assert alpha.name == "alpha" and alpha.display_name == "Alpha 7B"
    assert (alpha.sampling_weight, alpha.max_concurrency, alpha.enabled) == (2.0, 3, True)
    assert alpha.options == {
        "path": str(tmp_path / "models" / "alpha"),
        "system_prompt": "Be brief.",
        "sampling": {"temperature": 0.5, "stop": ["###"]},
    }
    assert beta.enabled is False and beta.options == {"base_url": "http://gpu1:8001/v1"}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('display_name = "X"\nbackend = "local"', "entry 1, field 'name': is required"),
        ('name = "x"\nbackend = "local"', "entry 1 ('x'), field 'display_name': is required"),
        ('name = "x"\ndisplay_name = "X"\nbackend = "grpc"', "field 'backend': must be one of"),
        (
            'name = "x"\ndisplay_name = "X"\nbackend = "local"\nsampling_weight = "high"',
            "entry 1 ('x'), field 'sampling_weight': must be an integer or a number, not str",
        ),
        (
            'name = "x"\ndisplay_name = "X"\nbackend = "local"\nsampling_weight = -1',
            "field 'sampling_weight': must be >= 0",
        ),
        ('name = "x"\ndisplay_name = "X"\nbackend = "local"', "field 'options.path': is required"),
        (
            'name = "x"\ndisplay_name = "X"\nbackend = "openai"',
            "field 'options.base_url': is required",
        ),
        (
            'name = "x"\ndisplay_name = "X"\nbackend = "local"\nwieght = 1',
            "field 'wieght': is not a known field",
        ),
        ('name = "Bad Name"\ndisplay_name = "X"\nbackend = "local"', "field 'name': use lowercase"),
        (
            'name = "x"\ndisplay_name = "X"\nbackend = "local"\nenabled = "yes"\n'
            'options = {path = "m"}',
            "field 'enabled': must be a boolean, not str",
        ),
    ],
)
def test_malformed_entries_name_the_entry_and_field(
    tmp_path: Path, entry: str, message: str
) -> None:
    with pytest.raises(RegistryError) as error:
        registry_parse(f"[[models]]\n{entry}\n", base_dir=tmp_path)
    assert message in str(error.value)


def test_second_entry_errors_say_entry_2(tmp_path: Path) -> None:
    text = GOOD + '\n[[models]]\nname = "alpha"\ndisplay_name = "Again"\nbackend = "local"\n'
    text += '[models.options]\npath = "x"\n'
    with pytest.raises(RegistryError, match=r"entry 3 \('alpha'\), field 'name': is used by"):
        registry_parse(text, base_dir=tmp_path)


def test_invalid_toml_and_empty_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="not valid TOML"):
        registry_parse("[[models]\n", base_dir=tmp_path)
    with pytest.raises(RegistryError, match="at least one"):
        registry_parse("", base_dir=tmp_path)


def test_sync_creates_updates_and_disables_without_deleting(db: None, tmp_path: Path) -> None:
    entries = registry_parse(GOOD, base_dir=tmp_path)
    first = registry_sync(entries)
    assert (first.created, first.updated, first.disabled) == (["alpha", "beta"], [], [])
    again = registry_sync(entries)
    assert (again.created, again.updated, again.disabled) == ([], [], [])

    changed = registry_parse(GOOD.replace('"Alpha 7B"', '"Alpha 8B"'), base_dir=tmp_path)[:1]
    result = registry_sync(changed)
    assert (result.updated, result.disabled) == (["alpha"], ["beta"])
    beta = ArenaModel.objects.get(name="beta")
    assert (beta.enabled, beta.in_registry) == (False, False)
    assert ArenaModel.objects.get(name="alpha").display_name == "Alpha 8B"


def test_sync_models_command_reports_errors_as_command_errors(db: None, tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[[models]]\nname = "x"\nbackend = "local"\n')
    with pytest.raises(CommandError, match="field 'display_name': is required"):
        call_command("sync_models", "--file", str(path))
    with pytest.raises(CommandError, match="cannot read models file"):
        call_command("sync_models", "--file", str(tmp_path / "missing.toml"))
    path.write_text(GOOD)
    call_command("sync_models", "--file", str(path))
    assert ArenaModel.objects.count() == 2
