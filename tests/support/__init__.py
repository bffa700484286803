"""
Fixtures shared by every system's tests: a private redis-server, TLS
certificates, and services started on free ports.
"""
