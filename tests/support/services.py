"""
Starting services under test and finding the ports they bound.
"""

from __future__ import annotations

from twisted.application.service import IServiceCollection


def start_service(testcase, service):
    """Start ``service`` now and stop it when ``testcase`` cleans up."""
    service.startService()
    testcase.addCleanup(service.stopService)
    return service


def listeners_of(service) -> list:
    """Every ``Listener`` in a service tree, depth first."""
    from marketplace.net import Listener
    if isinstance(service, Listener):
        return [service]
    if IServiceCollection.providedBy(service):
        return [found for child in service for found in listeners_of(child)]
    return []


def listening_port(listener):
    """A Deferred firing with the TCP port number ``listener`` bound."""
    return listener.whenListening().addCallback(lambda port: port.getHost().port)
