"""The command line: click commands, building real dependencies, and the exit-code table.

Owns: argument parsing, help text, turning an outcome into `ctx.exit(code)`.
Must not: decide anything about the canary, or import `kubernetes` (subcommands are loaded lazily,
so `canary-step validate` never imports the Kubernetes client).
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from step import __version__

# name -> "module:attribute", imported only when that subcommand is used.
_SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("step.cli.validate", "validate"),
    "crds": ("step.cli.crds", "crds"),
    "plan": ("step.cli.plan", "plan"),
    "run": ("step.cli.run", "run"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module = importlib.import_module(target[0])
        command: click.Command = getattr(module, target[1])
        return command


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
)
@click.version_option(__version__, prog_name="canary-step")
def cli() -> None:
    """Run ONE Flagger-style canary analysis of a Knative Service, as a pipeline step.

    \b
    Exit codes: 0 promoted/initialised/nothing to do, 2 usage error or invalid spec,
    3 rolled back, 4 infrastructure error (traffic on the primary, safe to retry),
    5 rollback failed (a person must look), 130/143 interrupted (primary restored).

    Every option can also be set with an environment variable CANARY_STEP_<OPTION>
    (e.g. CANARY_STEP_METRICS_SERVER), shown in each command's --help.
    """


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="canary-step")
