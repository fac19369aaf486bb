# Shared by the bench scripts (sourced): messages, failing, and reading one field of the
# one-line JSON that tern-bench and tern-flood print.
log() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: ERROR: %s\n' "$*" >&2
    exit 1
}
field() { sed -n 's/.*"'"$2"'":\([^,}]*\).*/\1/p' <<<"$1"; }
