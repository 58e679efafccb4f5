"""The home hub agent."""
