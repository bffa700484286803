"""
Runs one replica in a child process for the kill -9 / SIGSTOP tests, as
``twistd -n laptop-factory ARGS`` would, and prints ``READY <port>`` once it
listens, so tests wait on that line rather than on time.  A listening socket
passed as descriptor 3 with ``LISTEN_FDS=1`` and ``LISTEN_FDNAMES=listen`` in the
environment is used by
``--listen systemd:domain=INET:index=0``.
"""

import os
import sys

# The listening socket comes from the test as descriptor 3, as systemd
# hands one over; the endpoint parser reads these when it is imported.
if "LISTEN_FDS" in os.environ:
    os.environ["LISTEN_PID"] = str(os.getpid())

from twisted.internet import reactor  # noqa: E402
from twisted.logger import globalLogBeginner, textFileLogObserver  # noqa: E402

from marketplace.laptop.tap import Options, makeService  # noqa: E402


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
