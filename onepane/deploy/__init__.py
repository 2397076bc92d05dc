"""Deployments: an app replicated over locations, kept running by a reconciler."""
