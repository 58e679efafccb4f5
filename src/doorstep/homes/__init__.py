"""Homes, their access points and hubs, and hub enrollment by one-time claim code."""
