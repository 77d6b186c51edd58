"""Add-ons of a Constellation's members, rendered into Talos machine-config patches.

Pure functions from the Constellation's spec to data: which upstream release manifests the
nodes fetch (``cluster.extraManifests``, pinned URLs: :mod:`.versions`) and which objects Arges
renders itself (``cluster.inlineManifests``): MetalLB's pools, peers and advertisements
(:mod:`.metallb`), the ingress Service on its address (:mod:`.ingress`), cert-manager's
ClusterIssuer (:mod:`.certmanager`), and the Jobs that install the add-ons published only as
Helm charts, Cilium and external-dns (:mod:`.helmjob`, :mod:`.cilium`, :mod:`.externaldns`), as
Talos' documentation installs Cilium ("Deploying Cilium CNI", method 5: a Job in an inline
manifest). :mod:`.render` puts one member's together.
"""
