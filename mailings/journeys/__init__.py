"""Supporter journeys: a trigger, then steps (emails, waits, branches), each once."""
