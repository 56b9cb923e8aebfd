"""Celery task modules, one per capability queue. Task names are public API."""
