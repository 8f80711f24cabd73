"""Deployment files generated from the one configuration: Docker Compose and Kubernetes."""
