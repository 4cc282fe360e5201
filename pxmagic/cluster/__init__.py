"""Starting and stopping clusters: the Cluster class and the pxcluster command."""
from .cluster import Cluster
from .launcher import ClusterError

__all__ = ["Cluster", "ClusterError"]
