"""Observability shared by the ingress and the pools: metrics (Ray's metrics API, so they reach
Ray's Prometheus endpoint and the Ray dashboard), cost attribution, GPU sampling, tracing and
structured request logs. docs/metrics.md lists every metric."""
