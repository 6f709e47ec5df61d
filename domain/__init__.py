"""The verification domain: decisions, reason codes, typed input errors and the
data contracts shared by the workflow, activities and clients (stdlib only)."""
