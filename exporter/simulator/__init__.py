"""A fake CCE + IAM API, deterministic from a seed, with a control API under ``/_sim/``.

``running_simulator`` serves one in the current event loop; ``cce-exporter simulate`` runs one as
a process. See ``server.py`` for the interface and ``world.py`` for what the world holds.

The world                 ``catalog`` (the values it covers), ``timeline`` (phases on the clock),
                          ``resources`` (clusters, nodes, pools, add-ons, jobs and their JSON),
                          ``generate`` (from the seed), ``render`` (cached answers), ``world``
                          (control operations)
The HTTP application      ``gateway`` (ASGI, faults, routing, authentication), ``api`` (IAM,
                          metadata, CCE, add-ons), ``app`` (the control API), ``identity``
                          (account, tokens, temporary keys, agency), ``kube`` (clusters'
                          Kubernetes API), ``faults``, ``formats`` (times, JSON, error bodies)
"""

from exporter.simulator.faults import FAULT_KINDS
from exporter.simulator.server import Simulator, SimulatorConfig, running_simulator

__all__ = ["FAULT_KINDS", "Simulator", "SimulatorConfig", "running_simulator"]
