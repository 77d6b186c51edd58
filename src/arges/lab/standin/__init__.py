"""The lab's stand-in for Talos' API: the fake apid (:mod:`arges.talos.fakeapi`) run beside the
agent in target mode, in an image of its own (:mod:`.image`), so a lab cluster can be
bootstrapped, upgraded and reset through Talos' API on real firmware. :mod:`.node` is what it
makes of its machine config, :mod:`.apid` the program."""
