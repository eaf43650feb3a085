# Sign: `.sha256`, `.sha512` (upstream's checksum lines) and a cosign-compatible `.sig` beside every
# built file, made with publish.signingKeyPath (or registry.signing.keyPath).


rule sign:
    input:
        f"{PIPE}/cells/{{cell}}/{{kind}}/{{name}}.built.json",
    output:
        f"{PIPE}/cells/{{cell}}/{{kind}}/{{name}}.signed.json",
    log:
        f"{PIPE}/logs/{{cell}}/{{kind}}/{{name}}.sign.log",
    wildcard_constraints:
        kind="[a-z]+",
    resources:
        mem_mb=128,
    run:
        shell(f"{IF} pipeline sign {CONFIG_ARG} {{input}} --out {{output}} 2> {{log}}")
