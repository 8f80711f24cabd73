"""Idempotent "due soon" reminders, scheduled by Beat."""
