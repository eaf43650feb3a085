# Site: the files outside the cells (versions, catalogs, schematics/<id>, the public keys) are
# made by the publish step from the lock and the schematics; here, the installer images of each
# stale cell become the read-only `v2/` registry tree (and are pushed to the registry, if set).


rule installer_image:
    output:
        f"{PIPE}/cells/{{cell}}/v2/{{image}}.json",
    log:
        f"{PIPE}/logs/{{cell}}/v2/{{image}}.log",
    params:
        job=installer_args,
    resources:
        mem_mb=1024,
        compress=1,
    run:
        shell(INSTALLER)
