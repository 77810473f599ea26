"""Host one registry entry with `vllm serve` (on the GPU host), until Ctrl-C.

    python manage.py serve_model qwen2.5-7b-instruct --host 0.0.0.0 --python /opt/vllm/bin/python

Reads the entry's `[models.vllm]` table from the models file (no database needed), starts vLLM's
OpenAI-compatible server, waits for /health and prints the `base_url` for the entry's
`[models.options]`.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from arena.registry import RegistryError, registry_load
from workers.backends import vllm_server
from workers.backends.vllm_server import ServeError


class Command(BaseCommand):
    help = "Start `vllm serve` for a model whose entry has a [models.vllm] table; Ctrl-C stops it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the model's name in the models file")
        parser.add_argument("--port", type=int, default=None, help="default: vllm.port, or 8000")
        parser.add_argument(
            "--host",
            default=None,
            help=f"address to listen on (default {vllm_server.DEFAULT_HOST}; 0.0.0.0 for workers "
            "on other machines)",
        )
        parser.add_argument(
            "--python",
            default=None,
            help="the Python that has vllm installed (default: this one)",
        )
        parser.add_argument(
            "--file", type=Path, default=None, help="models file (default: ARENA_MODELS_FILE)"
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=vllm_server.DEFAULT_START_TIMEOUT,
            help="seconds to wait for /health",
        )
        parser.add_argument(
            "--print-command", action="store_true", help="print the command line and exit"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["file"] or settings.ARENA_MODELS_FILE
        try:
            entries = {entry.name: entry for entry in registry_load(Path(path))}
        except RegistryError as exc:
            raise CommandError(str(exc)) from None
        name = options["name"]
        entry = entries.get(name)
        if entry is None:
            raise CommandError(f"unknown model {name!r} in {path} (known: {', '.join(entries)})")
        try:
            spec = vllm_server.serve_spec(
                name, entry.options, host=options["host"], port=options["port"]
            )
        except ServeError as exc:
            raise CommandError(str(exc)) from None
        argv = vllm_server.serve_command(spec, python=options["python"])
        if options["print_command"]:
            self.stdout.write(vllm_server.command_display(argv))
            return
        try:
            version = vllm_server.vllm_check(options["python"])
        except ServeError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"starting vLLM {version} for {name}: {vllm_server.command_display(argv)}"
        )
        self._serve(spec, options)

    def _serve(self, spec: vllm_server.ServeSpec, options: dict[str, Any]) -> None:
        # SIGTERM (systemd, docker stop) stops the server as cleanly as Ctrl-C does; SIGINT is
        # set too because a shell's background job starts with it ignored.
        def _terminate(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGINT, signal.SIGTERM)}
        process = vllm_server.server_start(spec, python=options["python"])
        try:
            try:
                took = vllm_server.server_wait(process, spec.health_url, timeout=options["timeout"])
            except ServeError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(
                f"{spec.name} is healthy after {took:.0f} s; base_url: {spec.base_url}"
            )
            sys.stdout.flush()
            status = process.wait()
            raise CommandError(f"vllm exited with status {status}")
        except KeyboardInterrupt:
            self.stdout.write(f"stopping {spec.name}")
        finally:
            vllm_server.server_stop(process)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
