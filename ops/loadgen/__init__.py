"""Load generator and benchmark harness driven by scenario files (`python -m ops.loadgen`)."""
