"""
Replica 1 of the three-host laptop-order cluster.

    (umask 077; head -c 32 /dev/urandom | base64 > laptop-replica.secret)  # once, then copy
    twistd --pidfile= -ny tapfiles/laptop-replica-1.tac

Customers connect to port 8080 of any host.  Replicas reach each other on
REPLICA_HOSTS, which must be the same table in laptop-replica-0/1/2.tac (edit
it for your hosts), and prove the secret in SECRET_FILE, the same file on
every host, before anything they send is read.  The write-ahead log and
snapshots go to DATA_DIR, so a restart of this host, or of the whole
cluster, keeps every acknowledged order.
"""

from marketplace.laptop.tap import replica_application

REPLICA_HOSTS = {0: "hostA:8090", 1: "hostB:8090", 2: "hostC:8090"}
SECRET_FILE = "laptop-replica.secret"
DATA_DIR = "laptop-replica-1"

application = replica_application(1, REPLICA_HOSTS, SECRET_FILE, data_dir=DATA_DIR)
