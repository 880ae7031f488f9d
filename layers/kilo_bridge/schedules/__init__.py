"""Scheduled agent runs as data: a key creates, pauses, resumes and deletes them through the API."""
