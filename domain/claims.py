"""The mDL data elements idflow issues (ISO/IEC 18013-5, namespace org.iso.18013.5.1).

Names and the kind of value each holds; ``mdoc.claims`` checks values by kind,
``security.log_policy`` redacts every one of them (they are personal).
"""

from __future__ import annotations

# Kinds of value: "text" (at most 150 characters), "code" (at most 8), "date"
# (full-date), "country" (ISO 3166-1 alpha-2), "driving privileges".
REQUIRED: dict[str, str] = {
    "family_name": "text",
    "given_name": "text",
    "birth_date": "date",
    "issue_date": "date",
    "expiry_date": "date",
    "issuing_country": "country",
    "issuing_authority": "text",
    "document_number": "text",
}
OPTIONAL: dict[str, str] = {
    "un_distinguishing_sign": "code",
    "driving_privileges": "driving privileges",
}
AGE_ATTESTATIONS = (18, 21)
SET_BY_ISSUER: dict[str, str] = {
    "portrait": "taken from the verified selfie",
    **{f"age_over_{age}": "computed from birth_date" for age in AGE_ATTESTATIONS},
}
