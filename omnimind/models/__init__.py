"""Served models: factories and the per-process runtime that holds one."""
