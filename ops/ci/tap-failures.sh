#!/usr/bin/env bash
# Runs a tap command (npm test, npm run test:vault) as it is, and when it fails, prints every failing
# assertion again at the end with the file and subtests it sits in, and its diagnostics.
#
# Why: a CI record keeps only the tail of a run's output, and tap's TAP output ends with the coverage
# summary, so a failure deep in 13,000 assertions would otherwise be named nowhere in what is kept.
#
#   bash ops/ci/tap-failures.sh npm test
#
# Exit status: the command's own.
set -uo pipefail

output="$(mktemp)"
trap 'rm -f "$output"' EXIT

"$@" 2>&1 | tee "$output"
status=${PIPESTATUS[0]}
if [ "$status" -eq 0 ]; then exit 0; fi

printf '\n== failing assertions of "%s" (exit status %s)\n' "$*" "$status"
# TAP nests subtests by four spaces; remember each level's subtest name, and for every "not ok" that
# is a leaf (not the closing line of a subtest that failed because a child did) print its path and
# its YAML diagnostics block (the lines indented deeper that follow it), at most 40 lines each.
awk '
  function depth(line) { match(line, /^ */); return RLENGTH / 4 }
  function strip(text) { sub(/ # time=.*$/, "", text); return text }
  in_diag {
    if (match($0, /^ */) && RLENGTH > diag_indent && shown < 40) { print; shown++; next }
    in_diag = 0
  }
  /^ *# Subtest: / {
    d = depth($0); name = $0; sub(/^ *# Subtest: /, "", name); subtest[d] = name; next
  }
  /^ *not ok [0-9]+/ {
    d = depth($0); text = $0; sub(/^ *not ok [0-9]+ - ?/, "", text); text = strip(text)
    if (d in subtest && subtest[d] == text) next
    path = ""
    for (i = 0; i < d; i++) path = path (i ? " > " : "") subtest[i]
    printf "\n%s\n  not ok - %s\n", path, text
    failures++; in_diag = 1; shown = 0; match($0, /^ */); diag_indent = RLENGTH
  }
  END { printf "\n== %d failing assertion(s)\n", failures }
' "$output"
exit "$status"
