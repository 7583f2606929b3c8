"""The Canary spec: schema, loading with line numbers, validation, and the frozen models.

Owns: everything between a spec file (or an object from the API) and a `SpecBundle`. The entry points
are `step.spec.loader.load_files`, `load_bundle` and `bundle_from_objects`; `step.spec.crds` derives
the CustomResourceDefinitions from the same schema.
Must not: import kube, click, tenacity, requests, or do I/O other than reading the spec files.
(Kept free of imports so that `step.spec.model` stays cheap to import.)
"""
