"""`canary-step crds`: the Canary, MetricTemplate and AlertProvider CRDs, for `kubectl apply -f -`.

Owns: the crds command (options, printing the manifests as YAML or JSON on stdout).
Must not: build the CRDs itself (step.spec.crds generates them from our schema, the one source), talk
to a cluster, or import `kubernetes`.

A cluster without Flagger can then hold Canaries, MetricTemplates and AlertProviders for
`canary-step run --canary-ref`: `canary-step crds | kubectl apply -f -`.
"""

from __future__ import annotations

import json

import click
import yaml

from step.spec.crds import generate_crds


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
    short_help="Print the CRDs of Canary, MetricTemplate and AlertProvider (for kubectl apply -f -).",
)
@click.option(
    "--output",
    "-o",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    help="`yaml`: one document per CRD; `json`: a v1 List holding the three.",
)
def crds(output: str) -> None:
    """Print the CustomResourceDefinitions of Canary, MetricTemplate and AlertProvider, generated
    from the schema `validate` checks against, so that a cluster without Flagger can hold them:

    \b
        canary-step crds | kubectl apply -f -
    """
    manifests = generate_crds()
    if output == "json":
        click.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}, indent=2))
        return
    click.echo(yaml.safe_dump_all(manifests, sort_keys=False, default_flow_style=False), nl=False)
