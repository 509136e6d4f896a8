"""Hibernation: put clusters to sleep and wake them on policy, through hooks and the CLI, safely.

``policy`` reads the policy file, ``schedule`` computes desired states and transitions (pure,
DST-correct), ``controller`` acts on them, composing ``view`` (the clusters and the policies
that govern them), ``planning`` (what is due and wanted, pure), ``state`` (state, overrides,
stores), ``actions`` (the guarded calls), ``metrics`` and ``timer``; ``targets`` holds the
targets and the typed seams to the exporter service. ``hooks`` serves the HTTP hooks,
``notify`` posts outgoing webhooks, ``cli`` holds the ``plan``/``hibernate``/``awake`` commands.
"""
