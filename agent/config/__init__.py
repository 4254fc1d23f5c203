"""The agent's configuration: settings and their sections, secrets, station reconfiguration."""
