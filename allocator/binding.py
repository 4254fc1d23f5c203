"""What bounds a session's allocation: the kernel's binding codes and their names.

A module of its own so the request parser and the kernel's arrays both read it without
importing each other."""

BINDING_NAMES = ("vehicle", "cap", "charger", "station", "minimum")
