"""Deployment artefacts: generated Kubernetes and Helm files, and a Helm template renderer."""
