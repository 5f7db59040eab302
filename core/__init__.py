"""CONNEXT Re-engagement: all domain logic.  ``app.py``, ``api.py`` and
``scheduler.py`` are thin faces over this package."""
