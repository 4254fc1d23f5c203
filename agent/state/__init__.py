"""The read model of the running station, served to the local API."""
