"""
Branches A and B served by one process on one host.

    twistd --pidfile= -ny tapfiles/branches.tac

Branch A answers on port 5001 from branchA.csv, branch B on 5002 from
branchB.csv (paths relative to the directory twistd runs in).  Any number of
branches can be added the same way.
"""

from twisted.application.service import Application

from marketplace.branch.tap import branch_listener

application = Application("branches")
branch_listener("A", "branchA.csv", listen="tcp:5001").setServiceParent(application)
branch_listener("B", "branchB.csv", listen="tcp:5002").setServiceParent(application)
