"""cce-exporter: Prometheus metrics and scheduled hibernation for Huawei Cloud CCE."""

__version__ = "0.1.0"
