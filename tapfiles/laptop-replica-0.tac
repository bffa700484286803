"""
Replica 0 of the three-host laptop-order cluster.

    twistd --pidfile= -ny tapfiles/laptop-replica-0.tac

HOSTS must be the same table in laptop-replica-0/1/2.tac; edit it for your
hosts.  The write-ahead log and snapshots go to DATA_DIR, so a restart of
this host, or of the whole cluster, keeps every acknowledged order.
"""

from marketplace.laptop.tap import replica_application

HOSTS = {0: "hostA:8080", 1: "hostB:8081", 2: "hostC:8082"}
DATA_DIR = "laptop-replica-0"

application = replica_application(0, HOSTS, data_dir=DATA_DIR)
