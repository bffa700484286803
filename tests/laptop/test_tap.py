"""
The ``laptop-factory`` plugin's options and services, and a three-replica
cluster in one process on OS-chosen ports.
"""

import os

from twisted.application.service import IServiceCollection, loadApplication
from twisted.internet import defer, reactor
from twisted.python import usage
from twisted.trial import unittest

from marketplace.laptop.client import Address, LoadRun, verify
from marketplace.laptop.history import History, check_history
from marketplace.laptop.replication import PRIMARY
from marketplace.laptop.service import ReplicaService
from marketplace.laptop.storage import FileStorage, MemoryStorage
from marketplace.laptop.tap import Options, cluster_service, makeService, suite_service
from marketplace.net import connect
from protocols.laptop import ROLE_REPLICA, Hello, InstallSnapshot, encode_replica_message, encode_role
from tests.laptop.processes import REPOSITORY
from tests.laptop.rawpeer import RawClient
from tests.support.services import listening_port


#: a replica endpoint that needs no secret
LOOPBACK = "tcp:0:interface=127.0.0.1"


def parse(*argv):
    options = Options()
    options.parseOptions(list(argv))
    return options


def write_secret(testcase, secret=b"c2VjcmV0IHNoYXJlZCBieSBldmVyeSByZXBsaWNh\n", mode=0o600):
    """A secret file as the docs say to make one; returns its path."""
    path = testcase.mktemp()
    with open(path, "wb") as file:
        file.write(secret)
    os.chmod(path, mode)
    return path


class OptionsTests(unittest.TestCase):
    def test_defaults(self):
        options = parse("--replica-secret", write_secret(self))
        self.assertEqual((options["id"], options["listen"], options["peers"]), (0, "tcp:8080:backlog=1024", {}))
        self.assertEqual(options["data-dir"], os.path.join("laptop-data", "replica-0"))
        self.assertEqual((options["replica-listen"], options["idle-timeout"]), (None, 300.0))
        self.assertEqual(options["secret"], b"c2VjcmV0IHNoYXJlZCBieSBldmVyeSByZXBsaWNh")

    def test_replica_links_off_loopback_need_a_secret(self):
        """Without a secret, anyone who can reach a replica link endpoint could rewrite orders."""
        for argv in (
            [],  # every interface
            ["--listen", "tcp:8080:interface=10.0.0.5"],
            ["--listen", LOOPBACK, "--peer", "1=tcp:hostB:8081"],
            ["--listen", LOOPBACK, "--replica-listen", "tcp:8090"],
        ):
            error = self.assertRaises(usage.UsageError, parse, *argv)
            self.assertIn("--replica-secret", str(error))
        secret = write_secret(self)
        parse("--replica-secret", secret, "--peer", "1=tcp:hostB:8081")
        for argv in (
            ["--listen", LOOPBACK, "--peer", "1=tcp:127.0.0.1:8081", "--peer", "2=tcp:localhost:1"],
            # Customers anywhere, replica links on loopback.
            ["--replica-listen", "tcp:8090:interface=127.0.0.1", "--peer", "1=tcp:127.0.0.1:1"],
        ):
            self.assertIsNone(parse(*argv)["secret"])

    def test_unusable_secret_files_are_usage_errors(self):
        for path in (write_secret(self, mode=0o644), write_secret(self, b"short"),
                     os.path.join(self.mktemp(), "missing")):
            self.assertRaises(usage.UsageError, parse, "--replica-secret", path)

    def test_state_is_on_disk_unless_memory_only_is_asked_for(self):
        """
        A replica restarted empty would vote at once and could elect a
        primary lacking an acknowledged order: keeping nothing on disk must
        be asked for.
        """
        storage = makeService(parse("--id", "2", "--listen", LOOPBACK)).replica._storage
        self.assertIsInstance(storage, FileStorage)
        self.assertEqual(storage.directory, os.path.join("laptop-data", "replica-2"))
        options = parse("--memory-only", "--listen", LOOPBACK)
        self.assertIsNone(options["data-dir"])
        self.assertIsInstance(makeService(options).replica._storage, MemoryStorage)
        self.assertRaises(usage.UsageError, parse, "--memory-only", "--data-dir", "d")
        self.assertRaises(usage.UsageError, parse, "--memory-only", "--fsync")

    def test_issue_command_line(self):
        options = parse("--id", "0", "--listen", "tcp:8080", "--peer", "1=tcp:hostB:8081",
                        "--peer", "2=tcp:hostC:8082", "--replica-secret", write_secret(self))
        self.assertEqual(options["peers"], {1: "tcp:hostB:8081", 2: "tcp:hostC:8082"})

    def test_rejections(self):
        bad = [
            ["--id", "-1"],
            ["--peer", "tcp:hostB:8081"],
            ["--peer", "x=tcp:hostB:8081"],
            ["--peer", "1="],
            ["--peer", "1=nonsense:endpoint"],
            ["--peer", "1=tcp:a:1", "--peer", "1=tcp:b:2"],
            ["--id", "1", "--peer", "1=tcp:a:1"],
            ["--heartbeat", "0.5", "--backup-timeout", "0.4"],
            ["--backup-timeout", "2", "--election-timeout", "1"],
            ["--listen", "nonsense"],
            ["--replica-listen", "nonsense"],
            ["--idle-timeout", "0"],
        ]
        for argv in bad:
            self.assertRaises(usage.UsageError, parse, *argv)

    def test_timeouts(self):
        timeouts = parse("--listen", LOOPBACK, "--heartbeat", "0.1", "--backup-timeout", "0.3", "--election-timeout",
                         "2", "--election-stagger", "0.5", "--request-timeout", "9").timeouts()
        self.assertEqual(
            (timeouts.heartbeat, timeouts.backup, timeouts.election, timeouts.election_stagger,
             timeouts.request),
            (0.1, 0.3, 2.0, 0.5, 9.0),
        )

    def test_make_service(self):
        service = makeService(parse("--id", "2", "--listen", "tcp:0", "--peer", "0=tcp:a:1",
                                    "--replica-secret", write_secret(self),
                                    "--replica-listen", "tcp:0", "--idle-timeout", "60"))
        self.assertIsInstance(service, ReplicaService)
        self.assertEqual(service.replica.replica_id, 2)
        self.assertEqual(service.replica.peer_ids, (0,))
        self.assertEqual(service.replica_listener.description, "tcp:0")
        self.assertEqual(service.factory.idle_timeout, 60.0)
        self.assertIsNotNone(service.links[0]._secret)
        directory = self.mktemp()
        service = makeService(parse("--data-dir", directory, "--listen", LOOPBACK))
        self.assertIsInstance(service.replica._storage, FileStorage)
        self.assertEqual(service.replica._storage.directory, directory)

    def test_suite_cluster_layout(self):
        from marketplace.suite import Options as SuiteOptions
        options = SuiteOptions()
        options.parseOptions([])
        cluster = suite_service(options)
        replicas = list(cluster)
        self.assertEqual([r.listener.description for r in replicas],
                         ["tcp:8080:backlog=1024", "tcp:8081:backlog=1024",
                          "tcp:8082:backlog=1024"])
        self.assertEqual(replicas[0].links[2].description, "tcp:127.0.0.1:8082")

    def test_suite_cluster_on_its_ports_and_interface(self):
        from marketplace.suite import Options as SuiteOptions
        options = SuiteOptions()
        options.parseOptions(["--laptop-ports", "9180,9181,9182", "--interface", "127.0.0.2"])
        replicas = list(suite_service(options))
        self.assertEqual(replicas[1].listener.description,
                         "tcp:9181:interface=127.0.0.2:backlog=1024")
        self.assertEqual(replicas[0].links[2].description, "tcp:127.0.0.2:9182")
        self.assertEqual(
            [r.replica._storage.directory for r in replicas],
            [os.path.join("laptop-suite-data", f"replica-{i}") for i in range(3)],
        )
        self.assertEqual(len(list(cluster_service(ports=(1, 2, 3, 4, 5)))), 5)
        memory = cluster_service(ports=(1, 2, 3), data_root=None)
        self.assertEqual({type(r.replica._storage) for r in memory}, {MemoryStorage})


class TacFileTests(unittest.TestCase):
    def test_one_replica_per_host(self):
        hosts = {0: "hostA:8090", 1: "hostB:8090", 2: "hostC:8090"}
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        os.rename(write_secret(self), os.path.join(work, "laptop-replica.secret"))
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(work)
        for i in range(3):
            path = os.path.join(REPOSITORY, "tapfiles", f"laptop-replica-{i}.tac")
            application = loadApplication(path, "python")
            (replica,) = list(IServiceCollection(application))
            self.assertIsInstance(replica, ReplicaService)
            self.assertEqual(replica.replica.replica_id, i)
            self.assertEqual(replica.listener.description, "tcp:8080:backlog=1024")
            self.assertEqual(replica.replica_listener.description, "tcp:8090")
            self.assertEqual(
                {peer: link.description for peer, link in replica.links.items()},
                {peer: f"tcp:{address}" for peer, address in hosts.items() if peer != i},
            )
            self.assertTrue(all(link._secret for link in replica.links.values()))
            self.assertIsInstance(replica.replica._storage, FileStorage)


class InProcessClusterTests(unittest.TestCase):
    """Three ``ReplicaService``s in this process, on OS-chosen ports."""

    @defer.inlineCallbacks
    def test_orders_reads_and_verify(self):
        # Peers' addresses are unknown (None) until every port is bound.
        addresses = [{peer: None for peer in range(3) if peer != i} for i in range(3)]
        services = []
        for i in range(3):
            service = ReplicaService(i, "tcp:0:interface=127.0.0.1", addresses[i])
            service.startService()
            self.addCleanup(service.stopService)
            services.append(service)
        ports = []
        for service in services:
            port = yield listening_port(service.listener)
            ports.append(port)
        for i in range(3):
            for peer in addresses[i]:
                addresses[i][peer] = f"tcp:127.0.0.1:{ports[peer]}"
        client_addresses = [Address("127.0.0.1", port) for port in ports]
        history = History()
        run = LoadRun(client_addresses, 4, 100, 1, reactor, spread=True, history=history)
        summary = yield run.run().addTimeout(30, reactor)
        self.assertEqual((summary.failed, summary.latencies.count), (0, 400))
        run = LoadRun(client_addresses, 4, 20, 2, reactor, spread=True, history=history)
        summary = yield run.run().addTimeout(30, reactor)
        self.assertEqual(summary.failed, 0)
        outcome = yield verify(client_addresses, 4, reactor)
        self.assertTrue(outcome.ok, outcome.lines())
        primaries = [s for s in services if s.replica.role == PRIMARY]
        self.assertEqual(len(primaries), 1)
        book = dict(primaries[0].replica.book.records())
        self.assertEqual(book, {c: 99 for c in range(4)})
        self.assertEqual(check_history(history.operations, book), [])

    @defer.inlineCallbacks
    def test_unauthenticated_replica_links_are_refused_and_counted(self):
        """
        The reported attack on real sockets: role 2, Hello(0) and a forged
        InstallSnapshot sent to every replica's customer port and replica
        port.  Replica 0 takes replica links on a port of its own, the
        others on their customer port after the secret's handshake; all
        three share a secret, and nothing the forger sent is read.
        """
        secret = b"a secret every replica of this cluster shares"
        addresses = [{peer: None for peer in range(3) if peer != i} for i in range(3)]
        services = []
        for i in range(3):
            service = ReplicaService(
                i, LOOPBACK, addresses[i], replica_secret=secret,
                replica_listen=LOOPBACK if i == 0 else None,
            )
            service.startService()
            self.addCleanup(service.stopService)
            services.append(service)
        customer_ports = []
        replica_ports = []
        for service in services:
            customer_ports.append((yield listening_port(service.listener)))
            replica_ports.append((yield listening_port(service.replica_listener or service.listener)))
        for i in range(3):
            for peer in addresses[i]:
                addresses[i][peer] = f"tcp:127.0.0.1:{replica_ports[peer]}"
        client_addresses = [Address("127.0.0.1", port) for port in customer_ports]
        run = LoadRun(client_addresses, 2, 55, 1, reactor, spread=True)
        summary = yield run.run().addTimeout(30, reactor)
        self.assertEqual(summary.failed, 0)

        led = sum(s.counters.counts.get("laptop_views_led", 0) for s in services)
        refused_before = [
            s.counters.counts.get("laptop_rejected_replica_unauthenticated", 0) for s in services
        ]
        forged = (
            encode_role(ROLE_REPLICA) + encode_replica_message(Hello(0))
            + encode_replica_message(InstallSnapshot(1, 0, 10**9, 1, 0, 2, 0, ((0, 5), (999, 424242))))
        )
        for port in set(customer_ports + replica_ports):
            raw = yield connect(f"tcp:127.0.0.1:{port}", RawClient(), 2.0, reactor)
            raw.transport.write(forged)
            yield raw.closed.addTimeout(5, reactor)
        counts = [service.counters.counts for service in services]
        self.assertEqual(counts[0]["laptop_rejected_replica_on_customer_port"], 1)
        self.assertEqual(
            [c.get("laptop_rejected_replica_unauthenticated", 0) - before
             for c, before in zip(counts, refused_before)],
            [1, 1, 1],
        )
        outcome = yield verify(client_addresses, 1000, reactor)
        self.assertTrue(outcome.ok, outcome.lines())
        for service in services:
            self.assertEqual(dict(service.replica.book.records()), {0: 54, 1: 54})
        self.assertEqual(sum(s.counters.counts.get("laptop_views_led", 0) for s in services), led,
                         "nobody deposed the primary")

