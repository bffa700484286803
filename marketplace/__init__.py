"""
A Twisted protocol-server framework and the networked systems built on it.

Every system is a set of ``twistd`` plugins: the wire codecs live in
:mod:`protocols`, the domain services and their stores live here, one
subpackage per system.
"""

__version__ = "0.1.0"
