"""The ground floor: models, configuration, rendering, events, logs.

Everything else builds on it; it imports nothing from ``vestnik.outbox``,
``vestnik.workers`` or ``vestnik.webapp``.
"""
