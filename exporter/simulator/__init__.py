"""A fake CCE + IAM API, deterministic from a seed, with a control API under ``/_sim/``.

``running_simulator`` serves one in the current event loop; ``cce-exporter simulate`` runs one as
a process. See ``server.py`` for the interface and ``world.py`` for what the world holds.
"""

from exporter.simulator.faults import FAULT_KINDS
from exporter.simulator.server import Simulator, SimulatorConfig, running_simulator

__all__ = ["FAULT_KINDS", "Simulator", "SimulatorConfig", "running_simulator"]
