"""The canary analysis's decisions, as pure functions and data.

Owns: the state machine `machine.step(state, observation, now)` (decisions only), its protocol
(`protocol`: observations in, actions out), the saved state (`state`: plain data with a versioned JSON
form, `resume`), the tick records (`records`), the strategy seam (`strategy`: the canary over the
weight `schedule`, and blue/green on the `canary` tag), the evaluator that judges a measured value
(`evaluate`), Flagger's event texts (`messages`), the machine run against a scripted world
(`simulator`, what `plan` predicts from) and what to do with an interrupted analysis found on the
lease (`interrupted`).
Must not: do I/O, read the clock, sleep, or import anything that does (an import contract checks it).
"""
