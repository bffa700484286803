"""
Deferred answers for the embedded store's synchronous methods.
"""

import functools

from twisted.internet import defer


def answers(method):
    """
    Run a method to completion (atomic on the reactor thread) and hand its
    result, or the refusal it raised, back as a Deferred like every backend.
    """

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        return defer.maybeDeferred(method, *args, **kwargs)

    return wrapper
