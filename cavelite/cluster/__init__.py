"""Sessions past one machine: cavelite sessions on a Ray cluster (``pip install cavelite[ray]``).

>>> import cavelite.cluster as cc                          # doctest: +SKIP
>>> sessions = cc.connect()                               # or cc.connect("auto")
>>> rt = sessions.open("user-42")                         # same id -> same session
>>> rt.execute("total = 40 + 2").ok
True

One host actor per node owns that node's zygote and many workers; the
directory of who holds which session is in Ray's GCS; sessions sleep into a
snapshot store when idle and wake on whichever node has room; a lost node's
sessions come back elsewhere from their last snapshot. See docs/cluster.md.
``import cavelite`` never imports this package, nor Ray.
"""

from .errors import ClusterFullError, NotDurableError, SessionLostError
from .handle import ClusterRuntime
from .sessions import Sessions, connect
from .stores import DirectoryStore, ObjectStore, SnapshotStore

__all__ = ["ClusterFullError", "ClusterRuntime", "DirectoryStore", "NotDurableError", "ObjectStore",
           "SessionLostError", "Sessions", "SnapshotStore", "connect"]
