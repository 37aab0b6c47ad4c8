"""Online experiments, what the running server imports: config, hashing, assignment, exposure log, reload.

Offline work on experiments (log reading, statistics, reports, simulation) is ``offline.experiments``.
"""
