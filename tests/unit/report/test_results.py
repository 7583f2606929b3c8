"""The termination-message size, counted as Go's json.Marshal writes it (Tekton's entrypoint).

The figures were measured with Tekton's own termination.WriteMessage (tests/pipeline_schemas/eval);
tests/ship/test_pipeline_outcomes.py compares the two on the worst cases each run.
"""

from __future__ import annotations

from step.contract import TERMINATION_MESSAGE_BUDGET
from step.report.results import fit, termination_message_size


def test_size_is_gos_encoding() -> None:
    # [{"key":"decision","value":"\u003c\u0026\u003e","type":1},{"key":"reason","value":"é\u2028","type":1}]
    assert termination_message_size({"decision": "<&>", "reason": "é\u2028"}) == 103


def test_html_characters_count_six_bytes_each() -> None:
    plain = termination_message_size({"reason": "aaa"})
    assert termination_message_size({"reason": "<&>"}) == plain + 3 * 5


def test_fit_leaves_room_for_the_entrypoints_own_entries() -> None:
    assert TERMINATION_MESSAGE_BUDGET <= 4096 - 150
    values = fit({"reason": "&" * 4000, "decision": "failed"}, budget=TERMINATION_MESSAGE_BUDGET)
    assert termination_message_size(values) <= TERMINATION_MESSAGE_BUDGET
    assert values["decision"] == "failed" and values["reason"].endswith("...")
