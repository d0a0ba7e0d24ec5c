"""Process runtime helpers shared by the agent and the collector daemons (systemd notify, structured logs)."""
