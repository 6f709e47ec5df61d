"""Custom search attributes: what staff filter verifications by in the Web UI.

They are plaintext on the server, so they carry only stages, decisions, reason
codes and model versions — never anything about the person. The dev stack and
the test server register exactly these (``registration_flags``).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey

STATUS = SearchAttributeKey.for_keyword("IdflowStatus")
DECISION = SearchAttributeKey.for_keyword("IdflowDecision")
REASONS = SearchAttributeKey.for_keyword_list("IdflowReasons")
MODEL_VERSIONS = SearchAttributeKey.for_keyword_list("IdflowModelVersions")

ALL = (STATUS, DECISION, REASONS, MODEL_VERSIONS)

_TYPE_NAMES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}


def registration_flags() -> list[str]:
    """``temporal server start-dev`` flags that register every attribute above."""
    return [f"--search-attribute={key.name}={_TYPE_NAMES[key.indexed_value_type]}" for key in ALL]
