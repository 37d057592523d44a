"""Benchmarks of the harness itself: the steering engine against the one-feature loop (`engine`, on a
world; `shapes`, at real model shapes), cost against pool size (`scale`) and the numeric contract's
drift across CPU kernels (`drift`)."""
