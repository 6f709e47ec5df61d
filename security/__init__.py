"""Privacy and security: what keeps biometrics and claims readable only by those allowed.

- ``keys``: payload and blob master key rings from configuration (rotation).
- ``payload_codec``: AES-256-GCM over every Temporal payload; ``data_converter(settings)``.
- ``codec_server`` + ``staff_tokens``: /decode for the Web UI and CLI, for staff with a role.
- ``staff_assertions``: signed staff decisions (review) checked by the workers.
- ``envelope``: per-verification data keys wrapped by a master key; crypto-shredding.
- ``retention``: how long personal data lives, purging it, the retention schedule.
- ``ingest``: ``sanitize_image`` — hostile uploads refused or re-encoded without metadata.
- ``log_policy``: the log filter that redacts personal data.
- ``config``, ``cli``: the ``IDFLOW_*`` security settings and the ``idflow`` commands.
"""
