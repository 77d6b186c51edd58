"""The ``arges`` command line."""
