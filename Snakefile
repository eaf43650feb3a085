# The declarative factory: every (schematic x Talos version x asset) the config asks for, built,
# signed and published as a new generation of the static tree (and to the registry, if configured).
#
#   snakemake -c N --configfile FILE          (FILE defaults to config/config.yaml)
#
# plan.smk validates the config and every schematic, then plans: only cells that are missing or
# stale in the published generation become jobs; with nothing stale, `all` asks for nothing.

from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/plan.smk"


rule all:
    default_target: True
    input:
        PUBLISHED,


include: "workflow/rules/site.smk"
include: "workflow/rules/assets.smk"
include: "workflow/rules/sign.smk"
include: "workflow/rules/publish.smk"
