"""The canary analysis's decisions, as pure functions and data.

Owns: the weight schedule (`schedule`), the evaluator that judges a measured value (`evaluate`),
Flagger's event texts (`messages`) and the state machine `machine.step(state, observation, now)`.
Must not: do I/O, read the clock, sleep, or import anything that does (an import contract checks it).
"""
