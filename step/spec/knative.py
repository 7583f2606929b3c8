"""Knative's naming rules that decide whether canary-step's traffic tags can work on a Service.

Owns: the tags canary-step routes with (`primary`, `canary`), and whether Knative can name their hosts.
Knative Serving 1.17 (knative.dev/serving v0.44.0, `pkg/reconciler/route/domains`) builds a tag's
host name from the tag template (`{{.Tag}}-{{.Name}}`, knative.dev/networking's `DefaultTagTemplate`)
and then the domain template (`{{.Name}}.{{.Namespace}}.{{.Domain}}`), and checks the result as a
fully qualified domain name: DNS-1123 labels of at most 63 characters, at most 253 characters in all.
When it fails, the Route reports `ErrorConfig` and routes nothing new, so a run would wedge on its
first write; `validate`, `plan` and the run's preflight refuse such a Service instead.
Must not: do I/O, or know about any template other than Knative's defaults (a cluster with its own
`tag-template` or `domain-template` is checked by the Route itself: the router reports its
`ErrorConfig` at once).
"""

from __future__ import annotations

import re

PRIMARY_TAG = "primary"
CANARY_TAG = "canary"
TAGS = (PRIMARY_TAG, CANARY_TAG)

DNS_LABEL_MAX = 63
DNS_NAME_MAX = 253
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def tag_host(tag: str, name: str) -> str:
    """Knative's default tag template, `{{.Tag}}-{{.Name}}`: the first label of the tag's host."""
    return f"{tag}-{name}"


# The longest Service name whose tag hosts are valid labels: 63 less `primary-`.
MAX_SERVICE_NAME = DNS_LABEL_MAX - max(len(tag_host(tag, "")) for tag in TAGS)


def tag_host_problem(name: str, *, domain: str | None = None) -> str | None:
    """Why Knative could not name the host of one of our tags on Service `name`; None when it can.

    `domain`: what follows the Service's own first label in its URL (`<namespace>.svc.cluster.local`
    for a cluster-local Service), when known; it adds the 253-character limit of the whole name.
    """
    for tag in TAGS:
        label = tag_host(tag, name)
        if len(label) > DNS_LABEL_MAX:
            return (
                f"{name!r} has {len(name)} characters: Knative names the host of traffic tag {tag!r}"
                f" {label!r} ({len(label)} characters), and a DNS label holds at most {DNS_LABEL_MAX};"
                f" the Route would refuse it (ErrorConfig) and no traffic could move. Expected a Service"
                f" name of at most {MAX_SERVICE_NAME} characters"
            )
        if not _DNS_LABEL.match(label):
            return (
                f"{name!r}: the host of traffic tag {tag!r} would be {label!r}, which is not a DNS label"
                " (lower-case letters, digits and '-', starting and ending with a letter or digit)"
            )
        if domain:
            host = f"{label}.{domain}"
            if len(host) > DNS_NAME_MAX:
                return (
                    f"{name!r}: Knative names the host of traffic tag {tag!r} {host!r} ({len(host)}"
                    f" characters), and a host name holds at most {DNS_NAME_MAX}; the Route would refuse"
                    " it (ErrorConfig). Expected a shorter Service name or namespace"
                )
    return None
