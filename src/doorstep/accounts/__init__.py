"""Accounts: residents, couriers, operators, carrier organisations and their API clients,
and the bearer tokens they all authenticate with."""
