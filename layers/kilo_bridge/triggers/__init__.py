"""Signed webhook triggers: a secret URL that CI systems, alerting or chat call to start an agent run."""
