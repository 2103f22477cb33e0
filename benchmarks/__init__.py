"""Benchmarks of eventbus against its peers and the hand-written floors.

Run ``python -m benchmarks.run`` from the repository root; see ``benchmarks/README.md``.
"""
