"""Engines: adapters around real inference libraries, behind the protocol in `base.py`.

Engine libraries are imported lazily, inside the adapter, so the HTTP layer never loads them.
"""
