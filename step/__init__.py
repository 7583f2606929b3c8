"""canary-step: one Flagger-style canary analysis of a Knative Service, run as a pipeline step."""

__version__ = "0.1.0"
