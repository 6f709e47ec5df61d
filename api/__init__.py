"""The HTTP API (``idflow api``): verifications for backend services in any language.

``api.app.create_app`` assembles the FastAPI application from one router per
concern (``api.verifications``; webhooks and the review console join the same
way); ``api.problems`` turns every refusal into RFC 9457 problem details,
``api.clients`` authenticates API keys and enforces scopes and rate limits,
``api.idempotency`` replays the stored answer of a repeated write and
``api.uploads`` caps request bodies while they stream in.
"""
