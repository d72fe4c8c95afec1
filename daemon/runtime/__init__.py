"""The daemon as a process: configuration, start-up and shutdown (``main``), structured logs,
systemd notifications, memory hygiene, and ``launcher`` (start the real daemon as a
subprocess, for tests, benchmarks and the demo).
"""
