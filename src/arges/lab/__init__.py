"""The lab: a virtual datacenter of QEMU servers, BMCs and a provisioning network."""
