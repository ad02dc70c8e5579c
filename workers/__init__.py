"""Dramatiq workers: event handling, delivery, channels, limits and the scheduler."""
