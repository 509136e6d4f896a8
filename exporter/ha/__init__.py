"""Running several replicas: sharding the collection and electing one hibernation leader.

``exporter.ha.sharding``  which replica collects which cluster (a stable hash of the cluster ID)
``exporter.ha.leader``    the gates that keep followers from acting, and the wiring from settings
``exporter.ha.election``  leader election (file lock, Kubernetes Lease)
``exporter.ha.state``     the hibernation state the replicas share (Lease annotation or file)
"""
