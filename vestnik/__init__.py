"""Vestnik: notifications for CRMs.

Installed, every part of Vestnik is imported under this one package:
``vestnik.outbox`` (the CRM's ``emit`` and the relay), ``vestnik.workers``
(Dramatiq actors, delivery, channels, scheduler), ``vestnik.webapp`` (admin,
profile, webhooks), ``vestnik.shared`` (models, config, rendering: the ground
floor) and ``vestnik.migrations``.  In the repository they keep the design
card's top-level folders; ``pyproject.toml`` maps each folder to its name here.
This folder holds only the top: the console script (``vestnik.cli``), which
composes the others.
"""

__version__ = "0.1.0"
