"""Hibernation: put clusters to sleep and wake them on policy, through hooks and the CLI, safely.

``policy`` reads the policy file, ``schedule`` computes desired states and transitions (pure,
DST-correct), ``controller`` acts on them, ``hooks`` serves the HTTP hooks, ``notify`` posts
outgoing webhooks, ``cli`` holds the ``plan``/``hibernate``/``awake`` commands.
"""
