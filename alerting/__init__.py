"""Alerting: rules over recent data, alert state, routing, silences, acknowledgement, escalation, notifiers (see alerting/service.py)."""
