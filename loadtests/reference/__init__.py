"""A straight-line reference server for the benchmark — not a product.

``python -m loadtests.reference --bundle PATH --redis-url URL [--config FILE] [--host 127.0.0.1]
[--port 0] [--workers N]`` serves ``encore.v1.RankingService`` for Home only, doing the work of
Encore's Home pipeline in one coroutine per call with nothing around it: no interceptors, no
metrics, no budget, no executor, no thread hops, no experiments, no side effects. It builds
Encore's own components (``ranking.assembly.assemble`` over ``models.bundle.load_bundle`` and a
``RedisFeatureStore``) and calls them in order — user features, the Home sources, the Home
filters, candidate features — then runs the bundle's default (full) model inline on every
candidate (never the cascade) and the artist-cap selector. With Encore's cascade off
(``cascade_size: 0``) and the same settings file it returns the same items in the same order;
``tests/e2e/test_reference_server.py`` checks that. ``loadtests.bench.versus`` measures Encore
against it.

Now Playing answers UNIMPLEMENTED. ``RecordEvents`` writes through the same feature store.
``RankRequest.debug`` fills one timing, ``total``: handler entry to just before returning.
"""

# The package: handler (the servicer: Rank and RecordEvents in straight-line order), server
# (argument parsing, one process or ``--workers`` forked processes on one SO_REUSEPORT port, health).
