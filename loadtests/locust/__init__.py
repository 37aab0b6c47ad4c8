"""The locust load test (``make loadtest`` runs ``run_loadtest.sh``): ``locustfile`` is the traffic mix
and its pass/fail limits, ``grpc_user`` a reusable gevent-friendly locust user for gRPC services."""
