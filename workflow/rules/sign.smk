# Sign: `.sha256`, `.sha512` (upstream's checksum lines) and a cosign-compatible `.sig` beside every
# built file, made with publish.signingKeyPath (or registry.signing.keyPath).


rule sign:
    input:
        PIPE + "/cells/{cell}/{kind}/{name}.built.json",
    output:
        PIPE + "/cells/{cell}/{kind}/{name}.signed.json",
    wildcard_constraints:
        kind="[a-z]+",
    resources:
        mem_mb=128,
    shell:
        IF + " pipeline sign " + CONFIG_ARG + " {input} --out {output}"
