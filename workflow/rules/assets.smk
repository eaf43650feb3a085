# Assets: one rule per output kind, each building one target of a stale cell through the
# imagefactory CLI into the content store and writing its receipt. Steps shared between kinds
# (the initramfs, the UKI) are built once per key in the store, whichever job gets there first.
# A failed build writes a failed receipt: the other cells go on, and the publish reports it.

BUILT = PIPE + "/cells/{cell}/%s/{name}.built.json"
BUILD = IF + " pipeline build " + CONFIG_ARG + " {params.job} --out {output}"


rule kernel:
    output:
        BUILT % "kernel",
    params:
        job=lambda w: build_args(w, "kernel"),
    resources:
        mem_mb=256,
    shell:
        BUILD


rule initramfs:
    output:
        BUILT % "initramfs",
    params:
        job=lambda w: build_args(w, "initramfs"),
    resources:
        mem_mb=1024,
        compress=1,
    shell:
        BUILD


rule cmdline:
    output:
        BUILT % "cmdline",
    params:
        job=lambda w: build_args(w, "cmdline"),
    resources:
        mem_mb=256,
    shell:
        BUILD


rule uki:
    output:
        BUILT % "uki",
    params:
        job=lambda w: build_args(w, "uki"),
    resources:
        mem_mb=1024,
        compress=1,
    shell:
        BUILD


rule iso:
    output:
        BUILT % "iso",
    params:
        job=lambda w: build_args(w, "iso"),
    resources:
        mem_mb=1024,
        compress=1,
    shell:
        BUILD


rule disk:
    output:
        BUILT % "disk",
    params:
        job=lambda w: build_args(w, "disk"),
    resources:
        mem_mb=2048,
        compress=1,
    shell:
        BUILD


rule installer:
    output:
        BUILT % "installer",
    params:
        job=lambda w: build_args(w, "installer"),
    resources:
        mem_mb=1024,
        compress=1,
    shell:
        BUILD


rule pxe:
    output:
        BUILT % "pxe",
    params:
        job=lambda w: build_args(w, "pxe"),
    resources:
        mem_mb=256,
    shell:
        BUILD
