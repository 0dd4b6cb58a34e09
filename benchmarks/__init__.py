"""Throughput / latency / cost harness for Chancy and its peers.

Run it with ``python -m benchmarks`` (or ``hatch run bench:run``); see
``benchmarks/README.md``. Nothing here is imported by the library.
"""
