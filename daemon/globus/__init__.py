"""Everything that talks to Globus: the globus-sdk calls run in a bounded thread pool and the
one place Globus errors are translated (``ops``), credentials held in memory only
(``credentials``), and which collection the literal ``"local"`` means (``local_collection``).
"""
