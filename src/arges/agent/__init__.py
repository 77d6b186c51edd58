"""The discovery agent (runs on the servers, standard library only) and its image builder."""
