"""Encore's one exception root, and the whole tree of the exceptions Encore raises on purpose.

Every class lives next to the code that raises it and derives from ``EncoreError``, so a caller
catches broadly (``except EncoreError``) or narrowly (a leaf). Each message carries the context
needed to act on it (the field, key, file and line, URL with its password redacted, address).
Two edges translate the tree, each in one place: ``serving.errors.status_for`` (gRPC status of
a failed RPC) and ``cli.exit_codes.exit_code_for`` (exit code of an ``encore`` command; the
``encore <command>: <message>`` line is printed by ``cli.main``).

Error tree (class, module → gRPC status on the serving path and/or ``encore`` exit code; then its meaning)::

    EncoreError                       common.errors                     → exit 2
    │   the root; never raised itself
    ├── InternalError                 common.errors                     → INTERNAL; exit 70
    │   │   an invariant of Encore's own code broke: a bug; fails loudly, never retried
    │   └── ConservationError         ranking.pipeline                  → INTERNAL; exit 70
    │           a filter or selector lost or invented candidates
    ├── InvalidRequest                serving.errors                    → INVALID_ARGUMENT
    │       the client sent bad input; names the request field
    ├── Overloaded                    serving.errors                    → RESOURCE_EXHAUSTED
    │       admission refused the call (in flight, standing queue): shed early instead of queueing
    ├── DeadlineExceeded              ranking.budget                    → DEADLINE_EXCEEDED
    │       not even the fallback path fits in what is left of the budget
    ├── ConfigError                   serving.errors                    → exit 2 (start-up)
    │       invalid settings or a file they name; the message names the key
    ├── ListenError                   serving.errors                    → exit 2 (start-up)
    │       a listener (gRPC, metrics, admin) cannot bind: port in use, not a local address
    ├── FeatureStoreError             features.store                    → UNAVAILABLE; exit 2
    │   │   the feature store could not answer (refused, protocol error, corrupt value); reads fail open
    │   └── FeatureStoreTimeout       features.store                    → UNAVAILABLE; exit 2
    │           ... within the per-call timeout
    ├── RedisURLError                 features.redis_store              → exit 2 (start-up)
    │       a malformed Redis URL, shown with its password redacted; also a ValueError
    ├── LoadError                     features.redis_load               → exit 2
    │       a versioned Redis load did not complete (a batch failed after its retries); left unmarked
    ├── DatasetError                  features.datasets                 → exit 2
    │       a dataset file is missing or malformed; names the file and line
    ├── TrainingError                 models.training                   → exit 2
    │       training produced something unusable (e.g. ONNX output differs from LightGBM)
    ├── BundleError                   models.bundle                     → exit 2; reload kept
    │       a bundle is missing, corrupt, or does not match the feature schema
    ├── SparkEngineError              common.spark                      → exit 2
    │       ``--engine spark`` cannot run: pyspark missing, the ``--spark-master`` unreachable, a bad ``--spark-conf``
    ├── ExperimentError               serving.experiments.config        → exit 2
    │   │   base of the experiment errors
    │   ├── ExperimentConfigError     serving.experiments.config        → exit 2; reload kept
    │   │       an invalid experiments file; ``problems`` holds one located message each
    │   ├── AnalysisInputError        offline.experiments.outcome_logs  → exit 2
    │   │       an unusable exposure or outcome log (``path:line: problem``)
    │   ├── RevisionConflict          serving.experiments.store         → ABORTED; exit 2
    │   │       a change was based on a revision that is no longer the store's head
    │   ├── StoreUnavailable          serving.experiments.store         → UNAVAILABLE; exit 2
    │   │       the experiments store cannot be read or written; servers keep their last revision
    │   ├── IllegalTransition         serving.experiments.lifecycle     → FAILED_PRECONDITION
    │   │       a lifecycle rule forbids the change; ``rule`` names it
    │   ├── GateProblems              experimentation.control           → INVALID_ARGUMENT
    │   │       the change does not pass the gate; ``problems`` lists each
    │   ├── GateRefused               experimentation.generator         → INVALID_ARGUMENT
    │   │       no generated candidate passed the gate within the attempts
    │   └── BadRequest                experimentation.api               → INVALID_ARGUMENT
    │           an experimentation API request field is missing or malformed; names it
    ├── CaptureFormatError            serving.capture                   → exit 2
    │       a capture file is truncated or corrupt; names the file and byte offset
    ├── WriteError                    serving.logsink                   → dropped, counted
    │       a log write failed after ``written`` records; also an OSError; never fails an RPC
    ├── ReplayInputError              loadtests.replay                  → exit 2
    │       unusable replay input: no captures, an unreachable target
    ├── UsageError                    cli.exit_codes                    → exit 2
    │       a flag combination argparse cannot check
    └── TargetUnreachable             cli.exit_codes                    → exit 2
            ``rank``/``admin``: no connection to ``--target`` (down, wrong address, TLS)

Not in the tree on purpose: ``grpc.RpcError`` (a server's answer; ``encore rank`` and ``encore
admin`` print its status, exit 1), ``OSError`` from files a command was given (exit 2), and any
other exception, which is a bug (traceback, exit 70). On the read path dependency failures
(Redis, FAISS, ONNX) never reach the edge: the pipeline fails open and marks the answer degraded.
"""

from __future__ import annotations


class EncoreError(Exception):
    """Base of every exception Encore raises on purpose (the tree is in this module's docstring)."""


class InternalError(EncoreError):
    """An invariant of Encore's own code broke: a programming error, never the caller's input."""
