"""Running several replicas: sharding the collection and electing one hibernation leader.

``exporter.ha.sharding``  which replica collects which cluster (a stable hash of the cluster ID)
``exporter.ha.leader``    leader election (file lock, Kubernetes Lease), the shared hibernation
                          state, and the gates that keep followers from acting
"""
