"""The chaos suite (docs/deployment.md, "The chaos suite"): a real cluster — redis-server with
AOF, three ``wshub serve`` nodes, haproxy in front — and clients that publish and subscribe
through it while nodes, Redis and connections are killed. Run it with ``make chaos`` or
``python -m chaos [--short]``.
"""
