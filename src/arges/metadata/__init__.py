"""The metadata service: machine configs delivered to booting servers (``/configdata``)."""
