# Publish: push each asset to the registry's cache (when configured), then assemble a new
# generation of the tree out of hard links into the store and switch `public` to it atomically.


rule cache:
    input:
        f"{PIPE}/cells/{{cell}}/{{kind}}/{{name}}.signed.json",
    output:
        f"{PIPE}/cells/{{cell}}/{{kind}}/{{name}}.cached.json",
    log:
        f"{PIPE}/logs/{{cell}}/{{kind}}/{{name}}.cache.log",
    wildcard_constraints:
        kind="[a-z]+",
    resources:
        mem_mb=256,
    run:
        shell(f"{IF} pipeline cache {CONFIG_ARG} {{input}} --out {{output}} 2> {{log}}")


rule publish:
    input:
        publish_inputs,
    output:
        f"{PIPE}/published/{{plan}}.json",
    log:
        f"{PIPE}/logs/publish-{{plan}}.log",
    localrule: True
    run:
        shell(PUBLISH)
