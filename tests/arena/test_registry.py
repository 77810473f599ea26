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


# The [models.vllm] table: how `manage.py serve_model` hosts an openai entry.

VLLM_ENTRY = """
[[models]]
name = "qwen-7b"
display_name = "Qwen 7B"
backend = "openai"
[models.options]
base_url = "http://gpu1:8001/v1"
[models.vllm]
model = "Qwen/Qwen2.5-7B-Instruct"
port = 8001
gpu_memory_utilization = 0.45
max_model_len = 8192
dtype = "bfloat16"
extra_args = ["--enable-prefix-caching"]
"""


def test_vllm_table_is_kept_in_the_options_and_names_the_served_model(tmp_path: Path) -> None:
    [entry] = registry_parse(VLLM_ENTRY, base_dir=tmp_path)
    assert entry.options["vllm"] == {
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "port": 8001,
        "gpu_memory_utilization": 0.45,
        "max_model_len": 8192,
        "dtype": "bfloat16",
        "extra_args": ["--enable-prefix-caching"],
    }
    # serve_model serves it under the entry's name, so that is what the backend asks for.
    assert entry.options["served_model_name"] == "qwen-7b"


def test_vllm_table_keeps_an_explicit_served_model_name(tmp_path: Path) -> None:
    text = VLLM_ENTRY.replace(
        'base_url = "http://gpu1:8001/v1"',
        'base_url = "http://gpu1:8001/v1"\nserved_model_name = "qwen"',
    )
    [entry] = registry_parse(text, base_dir=tmp_path)
    assert entry.options["served_model_name"] == "qwen"


def test_vllm_model_folder_resolves_against_the_models_file(tmp_path: Path) -> None:
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    text = VLLM_ENTRY.replace('"Qwen/Qwen2.5-7B-Instruct"', '"models/tiny"')
    [entry] = registry_parse(text, base_dir=tmp_path)
    assert entry.options["vllm"]["model"] == str(tmp_path / "models" / "tiny")


def test_entries_without_a_vllm_table_are_unchanged(tmp_path: Path) -> None:
    _, beta = registry_parse(GOOD, base_dir=tmp_path)
    assert "vllm" not in beta.options and "served_model_name" not in beta.options


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('model = "Qwen/Qwen2.5-7B-Instruct"', ""), "field 'vllm.model': is required"),
        (('model = "Qwen/Qwen2.5-7B-Instruct"', 'model = ""'), "'vllm.model': must not be empty"),
        (("port = 8001", "port = 70000"), "field 'vllm.port': must be between 1 and 65535"),
        (("port = 8001", 'port = "8001"'), "field 'vllm.port': must be an integer"),
        (
            ("gpu_memory_utilization = 0.45", "gpu_memory_utilization = 1.5"),
            "field 'vllm.gpu_memory_utilization': must be in (0, 1]",
        ),
        (("max_model_len = 8192", "max_model_len = 0"), "field 'vllm.max_model_len': must be >= 1"),
        (
            ('extra_args = ["--enable-prefix-caching"]', "extra_args = [1]"),
            "field 'vllm.extra_args': must be a list of strings",
        ),
        (
            ('extra_args = ["--enable-prefix-caching"]', "tensor_parallel = 2"),
            "entry 1 ('qwen-7b'), field 'vllm.tensor_parallel': is not a known field",
        ),
    ],
)
def test_malformed_vllm_tables_name_the_entry_and_field(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    with pytest.raises(RegistryError) as error:
        registry_parse(VLLM_ENTRY.replace(*change), base_dir=tmp_path)
    assert message in str(error.value)


def test_a_vllm_table_needs_the_openai_backend(tmp_path: Path) -> None:
    text = '[[models]]\nname = "x"\ndisplay_name = "X"\nbackend = "local"\n'
    text += '[models.options]\npath = "m"\n[models.vllm]\nmodel = "m"\n'
    with pytest.raises(RegistryError, match="field 'vllm': needs backend = \"openai\""):
        registry_parse(text, base_dir=tmp_path)
