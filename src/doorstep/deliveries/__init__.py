"""Deliveries: a carrier's booking of packages to a home, in a window, for a courier."""
