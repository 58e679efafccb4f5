"""Entries: the courier's request, every check, the signed grant, and the entry's life
from authorized to verified relock."""
