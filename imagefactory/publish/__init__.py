"""Publishing: built files into the content store, signed, assembled into generations of the tree.

`content` (the store by digest), `sidecars` (checksums and signatures), `site` (versions, catalogs,
keys), `receipts` (what each pipeline job made), `generations` (assemble, switch, rollback, gc),
`cache` (upstream's OCI cache format), `installers` (the v2 tree and registry pushes).
"""
