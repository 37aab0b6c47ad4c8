"""The Encore benchmark (``make bench``, ``encore bench``, ``python -m loadtests.bench``).

For each bundle (default: the 1,000,000-item synthetic catalog and the real HetRec data; either is
built first when missing), in one run:

a. the component floor — FAISS search, Redis ``get_user``, one ONNX batch of the candidate count —
   each timed alone in this process (``loadtests.bench.floor``);
b. server-side per-stage and end-to-end latency from ``RankRequest(debug=True)`` timings over a
   warm closed-loop run, and the ratio server total p50 / floor (target ≤ 1.5×);
c. client-observed latency under an open-loop constant arrival rate from a separate process
   (``loadtests.bench.openloop``), stepping the rate up to find the highest rate held at p99 ≤ 25 ms
   with < 1 % errors and < 1 % degraded answers (the sustained rate); then a longer run at a
   steady rate (default half the sustained rate) against the 15 ms p99 target;
d. resident memory of the server and each of its worker processes (``/proc/<pid>/smaps_rollup``).

Then, for ``--versus-bundle`` (default hetrec-bench) when it is among ``--bundles``, the versus run
(``loadtests.bench.versus``; ``--no-versus`` skips it, ``--versus-only`` runs nothing else): Encore
against the straight-line reference server (``loadtests.reference``), Home only, interleaved —
(a) server-side handler p50 of Encore shipped, Encore with ``cascade_size: 0`` and the reference,
closed loop, and their ratios; (b) server CPU per request at ``--versus-rate`` (100 req/s) from
``/proc/<pid>/stat``, beside the load generator's CPU share; (c) the sustained rate of Encore and
the reference with ``--workers 2`` on a geometric rate ladder; (d) Encore at 2x and 5x its
sustained rate: goodput against capacity, refusals and their latency, log problems, health.

The servers run with Redis features (a ``redis-server`` started here on a free port) and a settings
file giving both surfaces 500 ANN candidates plus the top popularity items (~500 reach the scorer;
counted offline by the floor). Prints a table per bundle and writes ``<out>/bench.json``; server
logs and the open-loop results go next to it. With ``--profile`` (needs ``py-spy`` on PATH or in
the venv) the server is sampled for ``--profile-seconds`` under the steady rate and the top frames
are printed and written. Timings depend on the machine and its other load; they are reported,
never asserted.
"""

# The package, one module per job (``runner.main`` is the entry point, also behind ``encore bench``):
#   runner       argparse, the run per bundle, then the versus run
#   plan         Plan and VersusPlan: what one run measures
#   verdict      the targets and the pass/fail maths of a rate step (pure)
#   floor        (a) the component floor, in-process; also ``python -m loadtests.bench.floor``
#   closed_loop  (b) the closed-loop client collecting the server's debug stage timings
#   openloop     (c) the open-loop generator process (``python -m loadtests.bench.openloop``) and its driver
#   memory       (d) /proc smaps_rollup and parent-pid parsing, memory of a process tree
#   profiling    py-spy sampling and collapsing stacks into busy threads and top frames
#   workload     bundles (built when missing), the workload file, the server's settings file
#   report       the per-bundle table, the summary and bench.json
#   servers      the run's processes: Redis, encore serve, the reference; the progress line
#   cpu          process-tree CPU time from /proc/<pid>/stat
#   versus       the versus run (its a-d above) against loadtests.reference
#   versus_report  its pure figures (ratios, CPU per request, capacity, goodput) and its table
