"""The REST API (FastAPI) and the front ends that translate standards onto it."""
