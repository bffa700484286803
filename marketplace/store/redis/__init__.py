"""
The Redis store: sessions, balances and the user id directory shared by every
process and host that points at the same server.
"""

from twisted.application.service import Service
from zope.interface import implementer

from marketplace.store.interfaces import IStore
from marketplace.store.address import RedisAddress
from marketplace.store.ledger_rules import KEEP_EVERYTHING, HistoryRetention
from marketplace.store.redis.catalog import RedisCatalog
from marketplace.store.redis.connection import RedisConnection
from marketplace.store.redis.customers import RedisCustomers
from marketplace.store.redis.directory import RedisDirectory
from marketplace.store.redis.ledger import RedisLedger
from marketplace.store.redis.sessions import RedisSessions


@implementer(IStore)
class RedisStore(Service):
    def __init__(self, address: RedisAddress, timeout: float, reactor=None,
                 history_keep: HistoryRetention = KEEP_EVERYTHING):
        if reactor is None:
            from twisted.internet import reactor
        self.url = str(address)
        self.connection = RedisConnection(address, timeout, reactor)
        self.sessions = RedisSessions(self.connection)
        self.ledger = RedisLedger(self.connection, history_keep)
        self.directory = RedisDirectory(self.connection)
        self.customers = RedisCustomers(self.connection)
        self.catalog = RedisCatalog(self.connection)

    def startService(self):
        super().startService()
        self.connection.start()

    def stopService(self):
        super().stopService()
        return self.connection.stop()
