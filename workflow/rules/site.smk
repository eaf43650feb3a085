# Site: the files outside the cells (versions, catalogs, schematics/<id>, the public keys) are
# made by the publish step from the lock and the schematics; the installer images of each stale
# cell become the read-only `v2/` registry tree (and are pushed to the registry, if configured).


rule installer_image:
    output:
        PIPE + "/cells/{cell}/v2/{image}.json",
    params:
        job=installer_args,
    resources:
        mem_mb=1024,
        compress=1,
    shell:
        IF + " pipeline installer " + CONFIG_ARG + " {params.job} --image {wildcards.image} --out {output}"
