# Publish: push each asset to the registry's cache (when configured), then assemble a new
# generation of the tree out of hard links into the store and switch `public` to it atomically.

from imagefactory.publish.publisher import cell_receipts


rule cache:
    input:
        PIPE + "/cells/{cell}/{kind}/{name}.signed.json",
    output:
        PIPE + "/cells/{cell}/{kind}/{name}.cached.json",
    wildcard_constraints:
        kind="[a-z]+",
    resources:
        mem_mb=256,
    shell:
        IF + " pipeline cache " + CONFIG_ARG + " {input} --out {output}"


def publish_inputs(wildcards):
    """Only the stale cells' receipts: `all` never lists every file of the tree."""
    paths = [str(PLAN_FILE)]
    for cell in CELLS.values():
        paths += [str(p) for p in cell_receipts(FACTORY, cell.to_json(), STAGES)]
    return paths


rule publish:
    input:
        publish_inputs,
    output:
        PIPE + "/published/{plan}.json",
    localrule: True
    shell:
        IF + " pipeline publish " + CONFIG_ARG + " --plan " + shlex.quote(str(PLAN_FILE))
        + " --stages " + ",".join(STAGES) + " --out {output}"
