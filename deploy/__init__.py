"""Deployment artefacts: the generator of the Kubernetes and Helm files."""
