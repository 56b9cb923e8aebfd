"""Worker-side wiring: bootsteps, per-process services and signal handlers,
attached to the Celery app only through its extension points. ``omnimind.app``
names the bootsteps and options; nothing here is imported outside a worker.
"""
