"""The local control plane for the tests and the demo.

API server, Knative simulator, data plane, Prometheus.
"""
