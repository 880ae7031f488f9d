"""The agent runner: one job, from a fresh clone to its final state. Entry point `python -m agent_task JOB_ID`
(JOB_ID may come from the environment instead, as in the ECS task)."""
