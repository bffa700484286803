"""
Runs one replica in a child process for the kill -9 / SIGSTOP tests, as
``twistd -n laptop-factory ARGS`` would, and prints ``READY <port>`` once it
listens, so tests wait on that line rather than on time.
"""

import sys

from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver

from marketplace.laptop.tap import Options, makeService


def main(argv):
    options = Options()
    options.parseOptions(argv)
    service = makeService(options)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)

    def ready(port):
        sys.stdout.write("READY %d\n" % (port.getHost().port,))
        sys.stdout.flush()

    service.listener.whenListening().addCallback(ready)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
