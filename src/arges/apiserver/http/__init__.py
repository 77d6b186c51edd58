"""The HTTP face of the API server.

:mod:`.handler` routes every request (health, version, discovery, OpenAPI, resources),
authenticates it and turns every :class:`~arges.apiserver.errors.StatusError` into its
``Status`` body; :mod:`.routing` parses resource paths, :mod:`.params` decodes query
parameters and bodies, :mod:`.negotiation` reads the Accept header, :mod:`.responses` encodes
objects and lists, and :mod:`.watching` streams watches.
"""
