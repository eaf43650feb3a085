# Assets: one rule per output kind, each building one target of a stale cell through the
# imagefactory CLI into the content store and writing its receipt. Steps shared between kinds
# (the initramfs, the UKI) are built once per key in the store, whichever job gets there first.
# A failed build writes a failed receipt: the other cells go on, and the publish reports it.
# `compress` counts xz/zstd jobs (plan.smk allows one at a time unless --resources says more).


rule kernel:
    output:
        f"{PIPE}/cells/{{cell}}/kernel/{{name}}.built.json",
    log:
        f"{PIPE}/logs/{{cell}}/kernel/{{name}}.log",
    params:
        job=lambda w: build_args(w, "kernel"),
    resources:
        mem_mb=256,
    run:
        shell(BUILD)


rule initramfs:
    output:
        f"{PIPE}/cells/{{cell}}/initramfs/{{name}}.built.json",
    log:
        f"{PIPE}/logs/{{cell}}/initramfs/{{name}}.log",
    params:
        job=lambda w: build_args(w, "initramfs"),
    resources:
        mem_mb=1024,
        compress=1,
    run:
        shell(BUILD)


rule cmdline:
    output:
        f"{PIPE}/cells/{{cell}}/cmdline/{{name}}.built.json",
    log:
        f"{PIPE}/logs/{{cell}}/cmdline/{{name}}.log",
    params:
        job=lambda w: build_args(w, "cmdline"),
    resources:
        mem_mb=256,
    run:
        shell(BUILD)


rule uki:
    output:
        f"{PIPE}/cells/{{cell}}/uki/{{name}}.built.json",
    log:
        f"{PIPE}/logs/{{cell}}/uki/{{name}}.log",
    params:
        job=lambda w: build_args(w, "uki"),
    resources:
        mem_mb=1024,
        compress=1,
    run:
        shell(BUILD)


rule iso:
    output:
        f"{PIPE}/cells/{{cell}}/iso/{{name}}.built.json",
    log:
        f"{PIPE}/logs/{{cell}}/iso/{{name}}.log",
    params:
        job=lambda w: build_args(w, "iso"),
    resources:
        mem_mb=1024,
        compress=1,
    run:
        shell(BUILD)


rule disk:
    output:
        f"{PIPE}/cells/{{cell}}/disk/{{name}}.built.json",
    log:
        f"{PIPE}/logs/{{cell}}/disk/{{name}}.log",
    params:
        job=lambda w: build_args(w, "disk"),
    resources:
        mem_mb=2048,
        compress=1,
    run:
        shell(BUILD)


rule installer:
    output:
        f"{PIPE}/cells/{{cell}}/installer/{{name}}.built.json",
    log:
        f"{PIPE}/logs/{{cell}}/installer/{{name}}.log",
    params:
        job=lambda w: build_args(w, "installer"),
    resources:
        mem_mb=1024,
        compress=1,
    run:
        shell(BUILD)


rule pxe:
    output:
        f"{PIPE}/cells/{{cell}}/pxe/{{name}}.built.json",
    log:
        f"{PIPE}/logs/{{cell}}/pxe/{{name}}.log",
    params:
        job=lambda w: build_args(w, "pxe"),
    resources:
        mem_mb=256,
    run:
        shell(BUILD)
