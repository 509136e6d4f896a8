"""Prometheus alert rules for cce-exporter, generated from thresholds.yaml (see generate.py)."""
