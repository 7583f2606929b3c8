"""What a run leaves behind: the outcome and its exit code, results, the JSON report, the tick lines
on stderr, the GitHub job summary and outputs (`kube` writes Events and the Canary status).

Must not: decide anything about the canary, or choose an exit code other than the outcome's.
"""
