# Shared by pre-receive and post-receive; sourced, not run. Settings come from the bare
# repository's git config (git config imagefactory.KEY VALUE), or the environment:
#   imagefactory.code     IMAGEFACTORY_CODE     the imagefactory checkout: Snakefile, .venv (required)
#   imagefactory.config   IMAGEFACTORY_CONFIG   the pipeline config inside the pushed tree
#                                               (default config/config.yaml)
#   imagefactory.branch   IMAGEFACTORY_BRANCH   the branch that is built (default main)
#   imagefactory.worktree IMAGEFACTORY_WORKTREE where post-receive checks the branch out
#                                               (default: <this repository>.worktree)
#   imagefactory.cores    IMAGEFACTORY_CORES    snakemake -c (default 2)
#   imagefactory.args     IMAGEFACTORY_ARGS     more snakemake arguments, e.g.
#                                               "--profile workflow/profiles/cluster-generic"
setting() {  # setting KEY ENV DEFAULT
    eval "value=\${$2:-}"
    [ -n "$value" ] || value=$(git config --get "imagefactory.$1" || true)
    [ -n "$value" ] || value=$3
    printf '%s' "$value"
}
zero=0000000000000000000000000000000000000000
code=$(setting code IMAGEFACTORY_CODE "")
config=$(setting config IMAGEFACTORY_CONFIG config/config.yaml)
branch=$(setting branch IMAGEFACTORY_BRANCH main)
gitdir=$(cd "$(git rev-parse --git-dir)" && pwd)
worktree=$(setting worktree IMAGEFACTORY_WORKTREE "${gitdir%/}.worktree")
cores=$(setting cores IMAGEFACTORY_CORES 2)
args=$(setting args IMAGEFACTORY_ARGS "")
if [ -z "$code" ] || [ ! -x "$code/.venv/bin/imagefactory" ]; then
    echo "imagefactory: set imagefactory.code to a set-up imagefactory checkout" >&2
    exit 1
fi

export_tree() {  # export_tree COMMIT DIR: the commit's files in a fresh DIR
    mkdir -p "$2"
    git archive --format=tar "$1" | tar -x -C "$2"
}
