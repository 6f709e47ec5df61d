"""Untrusted images: bounded decoding and ingest sanitising.

- ``limits``: the budgets (``ImageLimits`` for what a file may declare,
  ``DecodeBudget`` for what one decode may spend);
- ``headers``: the container walked before any pixel is decoded;
- ``decode``: ``decode_image``, the one decode of untrusted bytes;
- ``bounded`` / ``decoding_process``: the decoding processes it runs in;
- ``ingest``: ``sanitize_image``, the re-encoding that is stored.
"""
