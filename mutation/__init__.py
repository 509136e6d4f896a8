"""Mutation testing of the safety-critical modules: ``python -m mutation`` (``make mutate``)."""
